package taskflow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
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

// WithReplicaAcks makes each flow mutation that returns a flow (create,
// transitions, UpdateState, RequestCancel, Claim, UpdateAndAppend) wait
// until n replicas received it (Redis WAIT, up to timeout, sent on the
// same connection right after the script) before it is acknowledged:
// a crash that promotes one of those replicas keeps it. When fewer
// replicas confirm in time the call returns a *NotReplicatedError
// (ErrNotReplicated): the write applied but is not known to be
// replicated. Default 0: no waiting, the write is acknowledged once the
// master applied it (asynchronous replication: a crash promoting a
// lagging replica loses it). Keep timeout below the client's
// ReadTimeout. Not yet applied to RecordStepObservation, InsertStep and
// the lease calls (Extend, Release).
func WithReplicaAcks(n int, timeout time.Duration) StoreOption {
	return func(c *storeConfig) { c.replicas, c.replTimeout = n, timeout }
}

// runScript runs a mutation script; with WithReplicaAcks it pipelines a
// WAIT behind it on the same connection (the flow's master on a cluster).
func (s *RedisStore) runScript(ctx context.Context, sc *redis.Script, keys []string, args []any) (any, error) {
	if s.replicas <= 0 {
		return sc.Run(ctx, s.client, keys, args...).Result()
	}
	var node interface{ Pipeline() redis.Pipeliner } = s.client
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		c, err := cc.MasterForKey(ctx, keys[0])
		if err != nil {
			return nil, err
		}
		node = c
	}
	run := func(eval bool) (*redis.Cmd, *redis.IntCmd) {
		pipe := node.Pipeline()
		var cmd *redis.Cmd
		if eval {
			cmd = sc.Eval(ctx, pipe, keys, args...)
		} else {
			cmd = sc.EvalSha(ctx, pipe, keys, args...)
		}
		w := redis.NewIntCmd(ctx, "wait", s.replicas, s.replTimeout.Milliseconds())
		_ = pipe.Process(ctx, w)
		_, _ = pipe.Exec(ctx)
		return cmd, w
	}
	cmd, w := run(false)
	if isNoScript(cmd.Err()) {
		cmd, w = run(true)
	}
	v, err := cmd.Result()
	if err != nil {
		return nil, err
	}
	if werr := w.Err(); werr != nil {
		return v, &NotReplicatedError{Wanted: s.replicas, Acked: 0, Err: werr}
	}
	if n := int(w.Val()); n < s.replicas {
		return v, &NotReplicatedError{Wanted: s.replicas, Acked: n}
	}
	return v, nil
}
