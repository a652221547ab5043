package taskflow

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

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
