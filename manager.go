package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Manager drives flows through the state machine. Each mutation is one
// Lua script run by Redis (one round trip): it checks the flow, applies the
// change, bumps the revision, keeps every index in step and appends the
// audit event, or refuses and writes nothing. A Manager is safe for
// concurrent use; any number of managers in any number of processes may
// share a flow space.
type Manager struct {
	store *RedisStore

	hubMu sync.Mutex
	hubs  map[string]*readyHub // Claim's subscriptions, by controller

	watches watchHub // Watch's subscriptions, one per shard
}

// NewManager returns a manager on store.
func NewManager(store *RedisStore) *Manager { return &Manager{store: store} }

// Store returns the manager's store, for the store-level operations.
func (m *Manager) Store() *RedisStore { return m.store }

// Close releases the subscriptions the manager opened for Claim and
// Watch; the channels of its watches close. The manager stays usable; a
// later Claim or Watch subscribes again.
func (m *Manager) Close() error {
	m.watches.close()
	m.hubMu.Lock()
	defer m.hubMu.Unlock()
	for k, h := range m.hubs {
		h.close()
		delete(m.hubs, k)
	}
	return nil
}

// CreateManaged creates a flow in status created at revision 0 and records
// a created event. ControllerID, Goal and OwnerSessionKey are required.
// With an IdempotencyKey, a repeated create returns the flow the key made
// (see CreateManagedInput.IdempotencyKey).
func (m *Manager) CreateManaged(ctx context.Context, in CreateManagedInput) (*Flow, error) {
	return m.store.create(ctx, in, false)
}

// CreateMirrored creates a flow that mirrors work run elsewhere: it is
// created and started at once (status running, revision 1, events created
// and started), in one atomic step. IdempotencyKey works as for
// CreateManaged.
func (m *Manager) CreateMirrored(ctx context.Context, in CreateManagedInput) (*Flow, error) {
	return m.store.create(ctx, in, true)
}

// Get returns a flow; a missing one is an error wrapping ErrNotFound.
func (m *Manager) Get(ctx context.Context, id uuid.UUID) (*Flow, error) {
	return m.store.get(ctx, id)
}

// Stats returns a snapshot of the flow space; see Stats. It costs two
// pipelined round trips (split by node on a cluster), plus one the first
// time a store is used.
func (m *Manager) Stats(ctx context.Context) (*Stats, error) { return m.store.stats(ctx) }

// StartRunning moves a created flow to running.
func (m *Manager) StartRunning(ctx context.Context, id uuid.UUID, opts ...MutationOption) (*Flow, error) {
	return m.store.transition(ctx, transitionReq{
		id: id, from: StatusCreated, to: StatusRunning, kind: EventStarted, payload: json.RawMessage(`{}`),
		mut: applyMutationOptions(opts),
	})
}

// SetWaiting moves a running flow to waiting on wait, which is a
// WaitCondition or its JSON (json.RawMessage, []byte, or any value that
// marshals to it). A timer is indexed by deadline and an external event by
// topic and correlation id, in the same script. JSON is stored as given
// (surrounding white space aside, at most 64 KiB): extra fields such
// as "reason" stay, and a timer's "at" keeps its zone. A wait of a kind
// the engine does not know is kept and acts as a manual wait: only an
// explicit Resume ends it. A missing kind, a timer without an RFC 3339
// "at", or an external event without topic or correlation id is
// ErrInvalidData.
// When the store keeps early events (WithEarlyEvents, on by default), a
// wait on an external event that already arrived is met at once: the flow
// is resumed with it (the log shows waiting, then resumed) and the flow
// returned is running.
func (m *Manager) SetWaiting(ctx context.Context, id uuid.UUID, wait any, opts ...MutationOption) (*Flow, error) {
	w, err := waitFromAny(id, wait)
	if err == nil {
		err = m.store.checkWaitLabels(w)
	}
	if err != nil {
		return nil, err
	}
	early := w.corr != "" && m.store.early.on()
	mut := applyMutationOptions(opts)
	f, err := m.store.transition(ctx, transitionReq{
		id: id, to: StatusWaiting, kind: EventWaiting,
		payload: json.RawMessage(`{"wait":` + w.json + `}`),
		wait:    w, mut: mut, early: early,
	})
	if early && errors.Is(err, ErrNotReplicated) {
		// The wait applied, not confirmed replicated: take a kept event
		// all the same, or the flow waits for one that already came.
		g, terr := m.TakeEarlyEvent(ctx, id)
		if terr != nil && !errors.Is(terr, ErrNotReplicated) {
			return nil, terr
		}
		return g, err
	}
	if err != nil || !early || f.Status != StatusWaiting {
		return f, err
	}
	// Waiting and indexed: now take an early event kept for the pair (early.go).
	return m.store.takeEarlyEvent(ctx, f, strings.TrimSuffix(w.corr, id.String()), mut.lean)
}

// Resume moves a waiting flow back to running, clears its wait, and
// shallow-merges patch into the state when patch is not nil.
func (m *Manager) Resume(ctx context.Context, id uuid.UUID, patch any, opts ...MutationOption) (*Flow, error) {
	req, err := m.resumeReq(id, patch, "")
	if err != nil {
		return nil, err
	}
	req.mut = applyMutationOptions(opts)
	return m.store.transition(ctx, req)
}

func (m *Manager) resumeReq(id uuid.UUID, patch any, guard string) (transitionReq, error) {
	p, err := toJSON("patch", patch)
	if err != nil {
		return transitionReq{}, err
	}
	state, err := m.store.stateArgs("patch", p, true)
	if err != nil {
		return transitionReq{}, err
	}
	return transitionReq{
		id: id, from: StatusWaiting, to: StatusRunning, kind: EventResumed,
		payload: json.RawMessage(`{"state_patch":` + rawOrNull(p) + `}`),
		guard:   guard, state: state,
	}, nil
}

// Finish moves a running flow to finished, merging finalState (when not
// nil) into the state.
func (m *Manager) Finish(ctx context.Context, id uuid.UUID, finalState any, opts ...MutationOption) (*Flow, error) {
	p, err := toJSON("final state", finalState)
	if err != nil {
		return nil, err
	}
	state, err := m.store.stateArgs("final state", p, true)
	if err != nil {
		return nil, err
	}
	return m.store.transition(ctx, transitionReq{
		id: id, to: StatusFinished, kind: EventFinished,
		payload: json.RawMessage(`{"final_state":` + rawOrNull(p) + `}`),
		state:   state, mut: applyMutationOptions(opts),
	})
}

// Fail moves a running or waiting flow to failed and merges
// {"failure":{"reason":reason,"at":<RFC 3339>}} into its state. The
// reason is required. A flow whose state is at its size cap can still
// fail: the failure object may take the state past the cap by its own
// size (a reason longer than the cap itself is refused, ErrInvalidData).
func (m *Manager) Fail(ctx context.Context, id uuid.UUID, reason string, opts ...MutationOption) (*Flow, error) {
	if strings.TrimSpace(reason) == "" {
		return nil, fmt.Errorf("%w: a failure reason is required", ErrInvalidData)
	}
	if err := checkText("the failure reason", reason); err != nil {
		return nil, err
	}
	if err := checkLen("reason", reason, m.store.limits.TextBytes); err != nil {
		return nil, err
	}
	now, _ := m.store.clock()
	failure, err := marshalJSON(map[string]any{
		"failure": map[string]string{"reason": reason, "at": now.Format(time.RFC3339)},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidData, err)
	}
	state, err := m.store.stateArgs("failure", failure, true)
	if err != nil {
		return nil, err
	}
	return m.store.transition(ctx, failReq(id, reason, failure, state, "", applyMutationOptions(opts)))
}

// failReq is the transition of Fail; guard as in transition.lua.
func failReq(id uuid.UUID, reason string, failure []byte, state []any, guard string, mut mutation) transitionReq {
	// Failing must always be possible: the failure object may take the
	// state past its cap by its own size.
	mut.slack = len(failure) + 16
	return transitionReq{
		id: id, to: StatusFailed, kind: EventFailed,
		payload: json.RawMessage(`{"reason":` + jsonString(reason) + `}`),
		state:   state, guard: guard, mut: mut,
	}
}

// RequestCancel sets the sticky cancel intent: from then on every
// transition but Cancel is refused with ErrCancelPending, and a waiting
// flow is cancelled by the engine's next tick. On a terminal flow, or one
// already cancel-requested, it changes nothing and returns the flow.
func (m *Manager) RequestCancel(ctx context.Context, id uuid.UUID, opts ...MutationOption) (*Flow, error) {
	return m.store.requestCancel(ctx, id, applyMutationOptions(opts))
}

// Cancel moves any non-terminal flow to cancelled and clears its wait.
// WithAudit names who cancelled and why in the cancelled event.
func (m *Manager) Cancel(ctx context.Context, id uuid.UUID, opts ...MutationOption) (*Flow, error) {
	mut := applyMutationOptions(opts)
	payload, err := mut.auditPayload()
	if err != nil {
		return nil, err
	}
	return m.store.transition(ctx, transitionReq{
		id: id, to: StatusCancelled, kind: EventCancelled, payload: payload, mut: mut,
	})
}

// UpdateState shallow-merges patch into the state (nil: no change) and
// sets the current step to nextStep unless it is "". The status does not
// change; a terminal flow refuses with ErrAlreadyTerminal and a
// cancel-requested one with ErrCancelPending. Concurrent updates of one
// flow all land: the merge runs inside Redis.
func (m *Manager) UpdateState(ctx context.Context, id uuid.UUID, patch any, nextStep string, opts ...MutationOption) (*Flow, error) {
	// updateState only reads the patch: its arguments copy the bytes.
	p, _, err := viewJSON("patch", patch)
	if err != nil {
		return nil, err
	}
	return m.store.updateState(ctx, id, p, nextStep, applyMutationOptions(opts))
}

// RecordStepObservation upserts the step (FlowID, RunID): a new run id
// creates a mirrored step; a known one has its task, status and result
// replaced in place (same step id), keeping its child session key when
// the observation has none. A step_observed event is appended. An unknown
// flow is ErrNotFound; a terminal flow refuses with ErrAlreadyTerminal and
// a cancel-requested one with ErrCancelPending (a *TransitionError), writing
// nothing. WithLease fences it like any mutation.
func (m *Manager) RecordStepObservation(ctx context.Context, obs StepObservation, opts ...MutationOption) (*FlowStep, error) {
	return m.store.recordStep(ctx, obs, applyMutationOptions(opts))
}

// ListSteps returns a flow's steps, oldest first. An unknown flow has none.
func (m *Manager) ListSteps(ctx context.Context, flowID uuid.UUID) ([]*FlowStep, error) {
	return m.store.listSteps(ctx, flowID)
}

// ListEvents returns up to limit of a flow's events, newest first. A
// limit of zero or less returns none; an unknown flow has none.
func (m *Manager) ListEvents(ctx context.Context, flowID uuid.UUID, limit int) ([]*FlowEvent, error) {
	return m.store.listEvents(ctx, flowID, limit)
}

// ListByOwner returns an owner's flows, newest created first. Without
// options it returns all of them, read page by page (1000 flows
// a round of reads), however many there are; with options (WithLimit,
// WithCursor) it returns the one page they describe. Use ListByOwnerPage
// for the cursor of the next page.
func (m *Manager) ListByOwner(ctx context.Context, owner string, opts ...ListOption) ([]*Flow, error) {
	return listAllOrPage(ctx, opts, func(opts ...ListOption) (*FlowPage, error) {
		return m.ListByOwnerPage(ctx, owner, opts...)
	})
}

// ListByStatus returns flows in a status, oldest first by the time they
// entered it (for a flow that changed status, its last update of status).
// Without options it returns all of them, read page by page; with
// options, the one page they describe. Use ListByStatusPage for the
// cursor of the next page.
func (m *Manager) ListByStatus(ctx context.Context, status FlowStatus, opts ...ListOption) ([]*Flow, error) {
	return listAllOrPage(ctx, opts, func(opts ...ListOption) (*FlowPage, error) {
		return m.ListByStatusPage(ctx, status, opts...)
	})
}

// ListByOwnerPage is ListByOwner with the cursor of the next page.
func (m *Manager) ListByOwnerPage(ctx context.Context, owner string, opts ...ListOption) (*FlowPage, error) {
	if owner == "" {
		return nil, fmt.Errorf("%w: owner is required", ErrInvalidData)
	}
	return m.store.listIndex(ctx, m.store.keys.perShard(func(shard int) string { return m.store.keys.owner(shard, owner) }), true, opts)
}

// CountByOwner returns how many flows an owner has, of every status: the
// sizes of the owner's index summed over the shards, in one round trip.
// It is the total beside a page of ListByOwnerPage (the agent tool's
// list_mine reports it). An empty owner is an error wrapping
// ErrInvalidData.
func (m *Manager) CountByOwner(ctx context.Context, owner string) (int, error) {
	if owner == "" {
		return 0, fmt.Errorf("%w: owner is required", ErrInvalidData)
	}
	return m.store.countIndex(ctx, func(shard int) string { return m.store.keys.owner(shard, owner) })
}

// ListByStatusPage is ListByStatus with the cursor of the next page.
func (m *Manager) ListByStatusPage(ctx context.Context, status FlowStatus, opts ...ListOption) (*FlowPage, error) {
	if !status.Valid() {
		return nil, fmt.Errorf("%w: unknown flow status %q", ErrInvalidData, status)
	}
	return m.store.listIndex(ctx, m.store.keys.perShard(func(shard int) string { return m.store.keys.status(shard, status) }), false, opts)
}

// ListRecent returns flows of every status (or of the given ones), the
// most recent status change first, one page: the operator's view. Flows
// are ordered by when they entered their current status: a state update
// does not move a flow (an index of every update would cost each flow
// about 140 bytes of Redis memory more).
func (m *Manager) ListRecent(ctx context.Context, statuses []FlowStatus, opts ...ListOption) (*FlowPage, error) {
	if len(statuses) == 0 {
		statuses = allStatuses[:]
	}
	var keys []string
	for _, st := range statuses {
		if !st.Valid() {
			return nil, fmt.Errorf("%w: unknown flow status %q", ErrInvalidData, st)
		}
		keys = append(keys, m.store.keys.perShard(func(shard int) string { return m.store.keys.status(shard, st) })...)
	}
	return m.store.listIndex(ctx, keys, true, opts)
}

// PruneTerminalFlows deletes terminal flows whose last update is older
// than olderThan, with their state, steps, events, kept early events
// (its inbox: a flow made again with the same id does not take them) and
// index entries, and returns how many it deleted. It works shard by shard
// in batches of 100 flows, and never touches a flow that is not terminal.
func (m *Manager) PruneTerminalFlows(ctx context.Context, olderThan time.Duration) (int, error) {
	return m.store.pruneTerminalFlows(ctx, olderThan)
}
