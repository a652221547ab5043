package taskflow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// ErrNotReplicated is wrapped by a *NotReplicatedError: the mutation
// applied on the master but fewer replicas than asked confirmed it in
// time (see WithReplicaAcks).
var ErrNotReplicated = errors.New("taskflow: applied but not confirmed replicated")

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

// notReplicated returns the *NotReplicatedError in err's chain, or nil.
func notReplicated(err error) *NotReplicatedError {
	var nre *NotReplicatedError
	if errors.As(err, &nre) {
		return nre
	}
	return nil
}

// applied reports whether err leaves the write applied: nil, or
// applied but not confirmed replicated.
func applied(err error) bool { return err == nil || errors.Is(err, ErrNotReplicated) }

// WithReplicaAcks makes every call that writes (a flow, its steps, its
// lease, early events: every script the store runs for a caller) wait
// until n replicas received the write (Redis WAIT, up to timeout, sent
// on the same connection right after the script) before it is
// acknowledged: a crash that promotes one of those replicas keeps it.
// When fewer replicas confirm in time the call returns a
// *NotReplicatedError (ErrNotReplicated): the write applied but is not
// known to be replicated. Default 0: no waiting, the write is
// acknowledged once the master applied it (asynchronous replication: a
// crash promoting a lagging replica loses it). Keep timeout below the
// client's ReadTimeout. A tick's resumes and lease expiries are not
// waited for: one lost in a crash is due again, and done again, by the
// next tick.
func WithReplicaAcks(n int, timeout time.Duration) StoreOption {
	return func(c *storeConfig) { c.replicas, c.replTimeout = n, timeout }
}

// ErrOutcomeUnknown is wrapped by an *OutcomeUnknownError: a write was
// sent but its reply never came (the connection broke, the master
// crashed, the deadline passed while waiting), so it may or may not have
// applied.
var ErrOutcomeUnknown = errors.New("taskflow: the write may have applied: its reply was lost")

// OutcomeUnknownError is a write cut off by the connection: an EOF, a
// reset or a timeout after go-redis sent it (and re-sent it MaxRetries
// times), typically the master crashing under it. It may have applied.
// Repeating the call with WithCallID(CallID) is safe: a flow remembers
// its recent calls (CallMemory), so a repeat of one that applied writes
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

// lostReply reports an error of a command that was sent but got no
// reply: the connection ended or timed out. A reply from the server
// (redis.Error: a refusal, READONLY, NOSCRIPT, ...) is not one, nor a
// pool that had no connection to give (nothing was sent).
func lostReply(err error) bool {
	if err == nil {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) || errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrClosed) {
		return false
	}
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}
