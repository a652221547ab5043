// Package taskflow is a durable, shared flow space in Redis for
// horizontally scaled AI-agent workers.
//
// A flow is a long job with a state machine, a JSON state that is
// shallow-merged, steps, an append-only audit log and waits (timer,
// external event, manual) that a [WaitEngine] resumes. Every mutation is
// one Lua script run atomically inside Redis, so any number of processes
// on any number of machines can drive the same flows without losing an
// update.
//
// The state machine:
//
//	created ──start──▶ running ──wait──▶ waiting
//	                    │  ▲               │
//	                    │  └────resume─────┘
//	                    ├──finish──▶ finished
//	                    └──fail────▶ failed ◀──fail── waiting
//	any non-terminal ──cancel──▶ cancelled
//
// Terminal flows (finished, failed, cancelled) refuse every transition with
// [ErrAlreadyTerminal]; a flow whose cancel was requested refuses every
// transition but the one to cancelled with [ErrCancelPending]; any other
// move outside the graph is [ErrIllegalTransition].
//
// Where to start:
//
//   - [NewRedisStore] opens a flow space on any go-redis client
//     (standalone, Sentinel or Cluster) and [NewManager] drives its flows:
//     create, start, wait, resume, finish, fail, cancel, update state,
//     record steps, list, watch.
//   - A fleet of workers shares a controller's flows with
//     [Manager.Claim], fenced by a [Lease] ([WithLease]); a flow whose
//     worker died is claimed again when its lease expires.
//   - [NewWaitEngine] resumes waiting flows: due timers and cancel
//     requests on each tick, external events through
//     [Manager.TryResumeExternal], [Manager.ResumeByCorrelation] and the
//     resume bridge ([WaitEngine.RunResumeBridge], [Manager.PublishResume]).
//     An event that arrives before its flow waits is kept for it
//     ([WithEarlyEvents]).
//   - A flow starts children ([Manager.StartChildren]) and waits on them
//     with a join ([WaitChildren]): it resumes with their outcomes, exactly
//     once, wherever they live; its end closes the children still open.
//   - [Manager.Stats] and [Manager.Watch] show what the space holds and
//     does; [Manager.Verify] checks it.
//
// Other packages of this module: agenttool is the tool an LLM calls to
// drive its own flows; fsck names what Verify reports; observe holds the
// hooks a metrics or tracing integration implements. The README has the
// key layout, to read any flow with redis-cli.
package taskflow

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Flow is one durable job.
type Flow struct {
	// ID is a UUID assigned on create: random (version 4), or derived
	// from CreateManagedInput.IdempotencyKey (version 5).
	ID uuid.UUID `json:"id"`
	// ControllerID labels the flow's definition, e.g. "kate/inbox-triage".
	ControllerID string `json:"controller_id"`
	// Goal is the human-readable intent.
	Goal string `json:"goal"`
	// OwnerSessionKey is "agent:<agent>:session:<session>", the tenancy key.
	OwnerSessionKey string `json:"owner_session_key"`
	// RequesterOrigin says who asked (a user id, an external system).
	RequesterOrigin string `json:"requester_origin"`
	// CurrentStep labels the current phase.
	CurrentStep string `json:"current_step"`
	// State is the flow's free-form JSON, shallow-merged on update ({}
	// when empty). It is nil only on a flow returned by a mutation made
	// WithoutState().
	State json.RawMessage `json:"state_json"`
	// Wait is what the flow is blocked on; nil unless Status is waiting.
	Wait json.RawMessage `json:"wait_json,omitempty"`
	// Status is the position in the state machine.
	Status FlowStatus `json:"status"`
	// CancelRequested is the sticky cancel intent.
	CancelRequested bool `json:"cancel_requested"`
	// Revision starts at 0 and grows by one on every persisted mutation.
	Revision int64 `json:"revision"`
	// Epoch names the write that made Revision: its call id (random per
	// call, or the caller's WithCallID), or its time in unix ms for a
	// write without one. A failover that loses acknowledged writes hands
	// their revision numbers out again to other writes; Revision and
	// Epoch together never repeat, so IfRevisionOf (and UpdateAndAppend)
	// refuse a flow read before the failover instead of matching other
	// data. Empty for a flow last written before epochs were kept, and
	// for one just inserted by InsertFlow (an import keeps the record as
	// given) until its next write.
	Epoch string `json:"epoch,omitempty"`
	// Attempts counts the failed attempts recorded by Manager.RetryLater
	// since the flow was created or Manager.ResetAttempts last ran.
	Attempts int `json:"attempts,omitempty"`
	// CreatedAt is when the flow was created.
	CreatedAt time.Time `json:"created_at"`
	// UpdatedAt is when the flow was last mutated.
	UpdatedAt time.Time `json:"updated_at"`
	// TraceParent is the W3C traceparent of the call that created the
	// flow, when the store's Observer supplied one (see
	// Observer.TraceParent); "" otherwise. It never changes.
	TraceParent string `json:"trace_parent,omitempty"`
	// ParentID is the parent of a child flow (Manager.StartChild), the
	// zero UUID for any other. It never changes.
	ParentID uuid.UUID `json:"parent_id,omitzero"`
	// ChildKey is a child's key among its parent's children.
	ChildKey string `json:"child_key,omitempty"`
	// Children counts the children started under the flow. It grows
	// without a revision: starting a child does not change its parent.
	Children int `json:"children,omitempty"`
	// Attributes are the flow's search attributes (name to value, see
	// CreateManagedInput.Attributes and Manager.SetAttributes); nil when
	// it has none, and on a flow returned by a mutation made
	// WithoutState().
	Attributes map[string]string `json:"attributes,omitempty"`
	// Concurrency and Priority are the flow's concurrency keys and
	// priority (CreateManagedInput.Concurrency, Manager.SetConcurrency).
	Concurrency []string `json:"concurrency,omitempty"`
	Priority    int      `json:"priority,omitempty"`
}

// TransitionTo moves the in-memory flow to next, applying the same checks
// as the store, in the same order: a terminal flow refuses with
// [ErrAlreadyTerminal], a cancel-requested flow refuses every move but the
// one to cancelled with [ErrCancelPending], and a move outside the graph is
// [ErrIllegalTransition]. It does not persist anything.
func (f *Flow) TransitionTo(next FlowStatus) error {
	if err := checkTransition(f.Status, f.CancelRequested, next); err != nil {
		return err
	}
	f.Status = next
	if next != StatusWaiting {
		f.Wait = nil
	}
	return nil
}

// RequestCancel sets the sticky cancel intent on a non-terminal flow; on a
// terminal one it does nothing. It does not persist anything.
func (f *Flow) RequestCancel() {
	if !f.Status.IsTerminal() {
		f.CancelRequested = true
	}
}

func checkTransition(from FlowStatus, cancelRequested bool, to FlowStatus) error {
	if from.IsTerminal() {
		return &TransitionError{From: from, To: to, Err: ErrAlreadyTerminal}
	}
	if cancelRequested && to != StatusCancelled {
		return &TransitionError{From: from, To: to, Err: ErrCancelPending}
	}
	if !from.CanTransitionTo(to) {
		return &TransitionError{From: from, To: to, Err: ErrIllegalTransition}
	}
	return nil
}

// CreateManagedInput describes a new flow.
type CreateManagedInput struct {
	// ControllerID is required.
	ControllerID string `json:"controller_id"`
	// Goal is required.
	Goal string `json:"goal"`
	// OwnerSessionKey is required.
	OwnerSessionKey string `json:"owner_session_key"`
	// RequesterOrigin is optional.
	RequesterOrigin string `json:"requester_origin"`
	// CurrentStep is optional.
	CurrentStep string `json:"current_step"`
	// State is the initial state: nil means {}; a json.RawMessage or []byte
	// is used as is (it must be valid JSON); anything else is marshalled.
	State any `json:"state_json"`
	// IdempotencyKey, when not empty (at most 1024 bytes),
	// makes the create idempotent in the flow space: the flow's id is
	// derived from the key (RedisStore.IdempotentFlowID, a version 5
	// UUID), and a second CreateManaged or CreateMirrored with the same
	// key returns the existing flow as it is now, writing nothing (no
	// event, no revision bump), also when creates race. The same key with
	// different input (any other field, or managed instead of mirrored)
	// is refused with ErrIdempotencyConflict. The key lives as long as
	// its flow: once PruneTerminalFlows deletes the flow, the key creates
	// a new one.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// Attributes are search attributes, name to value, that Find lists
	// flows by (Filter.Attribute), e.g. {"customer": "acme"}: at most 8;
	// a name is 1 to 64 bytes of a-z, 0-9, '_', '.' and '-'; a value 1 to
	// 256 bytes of UTF-8 without control characters. Values are strings
	// matched by equality only: write a number in one canonical form
	// ("2", not "02" or "2.0"). A value over 64 bytes costs the flow
	// more memory (Redis then keeps its hash in a larger encoding). An
	// invalid attribute is ErrInvalidData, naming it. Nil means none;
	// Manager.SetAttributes changes them later.
	Attributes map[string]string `json:"attributes,omitempty"`
	// Concurrency are the flow's concurrency keys (at most 4, each 1 to
	// 128 bytes of letters, digits and "_.:/@=+-"), e.g. "tenant:acme",
	// "model:gpt-x": every key's KeyLimit (Manager.SetKeyLimit) bounds its
	// claims, and the first names the flow's fair group, which takes
	// turns with the others (see Manager.SetKeyLimit). Part of the
	// idempotency fingerprint when given. Manager.SetConcurrency changes
	// them later.
	Concurrency []string `json:"concurrency,omitempty"`
	// Priority orders the flow's claims: 0 (the default) to 9, the
	// highest first, ahead of the fair order; keep it for few flows.
	Priority int `json:"priority,omitempty"`
}

// StepRuntime says who runs a step.
type StepRuntime string

// Step runtimes.
const (
	RuntimeManaged  StepRuntime = "managed"
	RuntimeMirrored StepRuntime = "mirrored"
)

// StepStatus is the status of one step.
type StepStatus string

// Step statuses.
const (
	StepPending   StepStatus = "pending"
	StepRunning   StepStatus = "running"
	StepSucceeded StepStatus = "succeeded"
	StepFailed    StepStatus = "failed"
	StepCancelled StepStatus = "cancelled"
)

// Valid reports whether s is a known step status.
func (s StepStatus) Valid() bool {
	switch s {
	case StepPending, StepRunning, StepSucceeded, StepFailed, StepCancelled:
		return true
	}
	return false
}

// Valid reports whether r is a known runtime.
func (r StepRuntime) Valid() bool { return r == RuntimeManaged || r == RuntimeMirrored }

// FlowStep is one unit of work inside a flow; (FlowID, RunID) is unique.
type FlowStep struct {
	ID              uuid.UUID       `json:"id"`
	FlowID          uuid.UUID       `json:"flow_id"`
	Runtime         StepRuntime     `json:"runtime"`
	ChildSessionKey string          `json:"child_session_key,omitempty"`
	RunID           string          `json:"run_id"`
	Task            string          `json:"task"`
	Status          StepStatus      `json:"status"`
	Result          json.RawMessage `json:"result_json,omitempty"`
	CreatedAt       time.Time       `json:"created_at"`
	UpdatedAt       time.Time       `json:"updated_at"`
}

// StepObservation reports what a step is doing; recording it upserts the
// step identified by (FlowID, RunID).
type StepObservation struct {
	FlowID uuid.UUID  `json:"flow_id"`
	RunID  string     `json:"run_id"`
	Task   string     `json:"task"`
	Status StepStatus `json:"status"`
	// ChildSessionKey, when empty, keeps the one already recorded.
	ChildSessionKey string `json:"child_session_key,omitempty"`
	// Result is optional: nil keeps none; see CreateManagedInput.State for
	// the accepted forms.
	Result any `json:"result_json,omitempty"`
}

// FlowEvent is one entry of a flow's append-only audit log.
type FlowEvent struct {
	// ID orders a flow's events: a decimal sequence number, 1 for the first.
	ID     string    `json:"id"`
	FlowID uuid.UUID `json:"flow_id"`
	Kind   EventKind `json:"kind"`
	// Revision is the flow's revision after the event.
	Revision int64 `json:"revision"`
	// Lease is the token of the lease the mutation was made under, if any.
	Lease   string          `json:"lease,omitempty"`
	Payload json.RawMessage `json:"payload"`
	At      time.Time       `json:"at"`
}

// EventKind names what an audit event records. The manager writes the
// Event* kinds below; UpdateAndAppend and AppendEventAt take any kind
// (non-empty valid UTF-8 within Limits.LabelBytes). It is stored as the
// string itself.
type EventKind string

// Event kinds written by the manager.
const (
	EventCreated         EventKind = "created"
	EventStarted         EventKind = "started"
	EventWaiting         EventKind = "waiting"
	EventResumed         EventKind = "resumed"
	EventFinished        EventKind = "finished"
	EventFailed          EventKind = "failed"
	EventCancelRequested EventKind = "cancel_requested"
	EventCancelled       EventKind = "cancelled"
	EventStateUpdated    EventKind = "state_updated"
	EventStepObserved    EventKind = "step_observed"
	EventClaimed         EventKind = "claimed"
	EventReleased        EventKind = "released"
	EventLeaseExpired    EventKind = "lease_expired"
	EventAttemptsReset   EventKind = "attempts_reset"
	// EventAttributesSet records Manager.SetAttributes: its payload is
	// {"set":{name:value,…},"removed":[name,…]}, what changed.
	EventAttributesSet EventKind = "attributes_set"
	// EventConcurrencySet records Manager.SetConcurrency: its payload is
	// {"keys":[…],"priority":n}, the keys and priority set.
	EventConcurrencySet EventKind = "concurrency_set"
	// EventImported is the kind of the one audit event InsertFlow writes
	// when it is given no audit log (a flow always has at least one event).
	EventImported EventKind = "imported"
)

// Lease is a worker's exclusive, expiring right to drive one flow.
type Lease struct {
	FlowID       uuid.UUID `json:"flow_id"`
	ControllerID string    `json:"controller_id"`
	WorkerID     string    `json:"worker_id"`
	// Token fences the lease: the scripts refuse a mutation carrying a
	// token that is not the flow's current, live lease.
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}
