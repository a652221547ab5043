package taskflow

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// Sentinel errors. Every error the package returns for these conditions
// wraps one of them, so errors.Is works. The error types below carry the
// details of some of them (errors.As).
var (
	// ErrNotFound: no flow (or step) with that id.
	ErrNotFound = errors.New("taskflow: not found")
	// ErrRevisionMismatch: the caller's expected revision is stale; use
	// errors.As with *RevisionMismatchError for the numbers.
	ErrRevisionMismatch = errors.New("taskflow: revision mismatch")
	// ErrIllegalTransition: the state machine has no such edge.
	ErrIllegalTransition = errors.New("taskflow: illegal transition")
	// ErrAlreadyTerminal: the flow is finished, failed or cancelled.
	ErrAlreadyTerminal = errors.New("taskflow: flow already terminal")
	// ErrCancelPending: the flow's cancel was requested; only cancel is allowed.
	ErrCancelPending = errors.New("taskflow: cancel pending")
	// ErrInvalidData: input that is not valid JSON, too large, or malformed.
	ErrInvalidData = errors.New("taskflow: invalid data")
	// ErrDuplicateStep: a step with that flow and run id already exists.
	ErrDuplicateStep = errors.New("taskflow: duplicate step")
	// ErrLeaseLost: a mutation made under a lease that expired, was
	// released, or moved to another worker; nothing was written.
	ErrLeaseLost = errors.New("taskflow: lease lost")
	// ErrLayoutMismatch: the store was opened with another shard count
	// than the flow space was written with, or the space was written by a
	// version that placed flows in shards another way (see RedisStore.ShardOf).
	ErrLayoutMismatch = errors.New("taskflow: layout mismatch")
	// ErrAlreadyExists: the flow id is already taken. A create that
	// go-redis re-sent after losing its reply is not refused with it: it
	// returns the flow the first attempt created.
	ErrAlreadyExists = errors.New("taskflow: flow already exists")
	// ErrIdempotencyConflict: a create carried an idempotency key that
	// already made a flow from different input (another controller, goal,
	// owner, origin, current step, initial state, or managed instead of
	// mirrored). Nothing was written; the existing flow is untouched.
	ErrIdempotencyConflict = errors.New("taskflow: idempotency key reused with different input")
	// ErrStateTooLarge is wrapped (with ErrInvalidData) by a refusal whose
	// state would exceed the store's cap (Limits.StateBytes).
	ErrStateTooLarge = errors.New("taskflow: state too large")
	// ErrRevisionLimit is wrapped (with ErrInvalidData) by a refusal to
	// change a flow whose revision or newest event id could pass the
	// largest revision a flow holds (10^14 - 1).
	ErrRevisionLimit = errors.New("taskflow: revision limit")
	// ErrNotReplicated is wrapped by a *NotReplicatedError: the mutation
	// applied on the master but fewer replicas than asked confirmed it in
	// time (see WithReplicaAcks).
	ErrNotReplicated = errors.New("taskflow: applied but not confirmed replicated")
	// ErrOutcomeUnknown is wrapped by an *OutcomeUnknownError: a write was
	// sent but its reply never came (the connection broke, the master
	// crashed, the deadline passed while waiting), so it may or may not
	// have applied.
	ErrOutcomeUnknown = errors.New("taskflow: the write may have applied: its reply was lost")
)

// attemptsMoved is retry.lua's ATTEMPTS refusal: the count changed
// between the read and the script.
type attemptsMoved struct{ actual int }

func (e *attemptsMoved) Error() string {
	return "taskflow: attempts count moved to " + strconv.Itoa(e.actual)
}

// errStaleEntry: a tick script found that its index entry named no flow it
// could act on, and dropped the entry.
var errStaleEntry = errors.New("taskflow: stale index entry")

// RevisionMismatchError carries the expected and actual revisions of a
// refused compare-and-set. It matches ErrRevisionMismatch with errors.Is.
type RevisionMismatchError struct {
	FlowID   uuid.UUID
	Expected int64
	Actual   int64
	// ExpectedEpoch is the epoch the caller expected (IfRevisionOf,
	// UpdateAndAppend), "" when it named a revision only. When Expected
	// equals Actual, the epoch differs: another write holds the revision
	// (the expected one was lost, e.g. by a failover).
	ExpectedEpoch string
}

func (e *RevisionMismatchError) Error() string {
	if e.Expected == e.Actual && e.ExpectedEpoch != "" {
		return fmt.Sprintf("taskflow: revision mismatch on flow %s: revision %d is another write than epoch %q (that write was lost)", e.FlowID, e.Actual, e.ExpectedEpoch)
	}
	return fmt.Sprintf("taskflow: revision mismatch on flow %s: expected %d, actual %d", e.FlowID, e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrRevisionMismatch) true.
func (e *RevisionMismatchError) Is(target error) bool { return target == ErrRevisionMismatch }

// TransitionError is a refused status change. Err is ErrAlreadyTerminal,
// ErrCancelPending or ErrIllegalTransition, and errors.Is sees through it.
type TransitionError struct {
	FlowID uuid.UUID
	From   FlowStatus
	To     FlowStatus
	Err    error
}

func (e *TransitionError) Error() string {
	flow := "the flow"
	if e.FlowID != uuid.Nil {
		flow = "flow " + e.FlowID.String()
	}
	switch {
	case e.Err == ErrAlreadyTerminal && e.To == "": // a state update, not a status change
		return fmt.Sprintf("%v: %s is %s and cannot change", e.Err, flow, e.From)
	case e.Err == ErrAlreadyTerminal && e.From == e.To:
		return fmt.Sprintf("%v: %s is already %s", e.Err, flow, e.From)
	case e.Err == ErrAlreadyTerminal:
		return fmt.Sprintf("%v: %s is %s and cannot become %s", e.Err, flow, e.From, e.To)
	case e.Err == ErrCancelPending && e.To == "":
		return fmt.Sprintf("%v: %s has a cancel request; only cancel is allowed", e.Err, flow)
	case e.Err == ErrCancelPending:
		return fmt.Sprintf("%v: %s has a cancel request and cannot become %s; only cancel is allowed", e.Err, flow, e.To)
	default:
		return fmt.Sprintf("%v: %s cannot move from %s to %s", e.Err, flow, e.From, e.To)
	}
}

// Unwrap returns the sentinel.
func (e *TransitionError) Unwrap() error { return e.Err }

// NotReplicatedError reports a mutation that applied on the master
// but that only Acked of the Wanted replicas confirmed within the
// timeout: a crash of the master now could still lose it.
//
// The write is not undone and the call returns what it applied beside
// the error, as on success: the flow (Create, every transition,
// UpdateState, UpdateAndAppend, RetryLater, ...), the lease (Claim,
// Extend), the step. Flow and Lease hold the same here, for a caller
// that only has the error. What a caller should do:
//
//   - carry on with what was returned: it is the flow as persisted on
//     the master, and the state later calls build on. A Claim that
//     reports ErrNotReplicated has leased the flow to this worker:
//     drive it, or Release the lease; dropping it holds the flow until
//     the lease expires.
//   - if the write must not be lost (it tells someone outside that work
//     is done), repeat the call with the same WithCallID once replicas
//     are back: a call the flow remembers writes nothing and answers as
//     the first run did, and the WAIT behind it covers everything the
//     master holds, this write included. A later write acknowledged
//     without the error confirms it too: replication keeps the master's
//     order.
//   - expect it while a freshly promoted master has no replica yet (a
//     replica resyncs within seconds to tens of seconds after a
//     failover): every write then reports it, after waiting the whole
//     timeout.
type NotReplicatedError struct {
	Wanted, Acked int
	Err           error // the WAIT command's own error, if any
	// Flow is the flow as the write left it on the master, when the
	// call answers with a flow (nil otherwise).
	Flow *Flow
	// Lease is the lease a Claim or Extend holds now (nil otherwise).
	Lease *Lease
}

func (e *NotReplicatedError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%v: waiting for %d replicas: %v", ErrNotReplicated, e.Wanted, e.Err)
	}
	return fmt.Sprintf("%v: %d of %d replicas confirmed", ErrNotReplicated, e.Acked, e.Wanted)
}

func (e *NotReplicatedError) Unwrap() error { return ErrNotReplicated }

// OutcomeUnknownError is a write cut off by the connection: an EOF, a
// reset or a timeout after go-redis sent it (and re-sent it MaxRetries
// times), typically the master crashing under it. It may have applied.
// Repeating the call with WithCallID(CallID) is safe: a flow remembers
// its recent calls (see WithCallID), so a repeat of one that applied writes
// nothing and answers as it did, and one that did not applies now. A
// failover that lost the write lost the call's memory with it, so the
// repeat applies it again, once. errors.Is finds both ErrOutcomeUnknown
// and the connection's own error (io.EOF, a net.Error, ...).
type OutcomeUnknownError struct {
	FlowID uuid.UUID // uuid.Nil for a write of no one flow
	CallID string    // the call id the write carried; "" when it has none
	Err    error     // what the connection reported
}

func (e *OutcomeUnknownError) Error() string {
	var b strings.Builder
	b.WriteString("taskflow: ")
	if e.FlowID != uuid.Nil {
		fmt.Fprintf(&b, "flow %s: ", e.FlowID)
	}
	fmt.Fprintf(&b, "the connection failed before the reply (%v): the write may have applied", e.Err)
	if e.CallID != "" {
		fmt.Fprintf(&b, "; repeating it with WithCallID(%q) is safe", e.CallID)
	}
	return b.String()
}

func (e *OutcomeUnknownError) Unwrap() []error { return []error{ErrOutcomeUnknown, e.Err} }
