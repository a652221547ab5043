package taskflow

import (
	"errors"
	"fmt"
	"time"
)

// ErrNotReplicated is wrapped by a *NotReplicatedError: the mutation
// applied on the master but fewer replicas than asked confirmed it in
// time (see WithReplicaAcks).
var ErrNotReplicated = errors.New("taskflow: applied but not confirmed replicated")

// NotReplicatedError reports a mutation that applied on the master (its
// result is there, e.g. for Get, or for a retry with the same
// WithCallID) but that only Acked of the Wanted replicas confirmed
// within the timeout: a crash of the master now could still lose it.
type NotReplicatedError struct {
	Wanted, Acked int
	Err           error // the WAIT command's own error, if any
}

func (e *NotReplicatedError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%v: waiting for %d replicas: %v", ErrNotReplicated, e.Wanted, e.Err)
	}
	return fmt.Sprintf("%v: %d of %d replicas confirmed", ErrNotReplicated, e.Acked, e.Wanted)
}

func (e *NotReplicatedError) Unwrap() error { return ErrNotReplicated }

// WithReplicaAcks makes every call that writes (a flow, its steps, its
// lease, the mailbox: every script the store runs for a caller) wait
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
