package taskflow

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Defaults of a RetryPolicy.
const (
	defaultRetryMaxAttempts = 5
	defaultRetryBase        = time.Second
	defaultRetryCap         = 5 * time.Minute
	// maxRetryCauseBytes caps the cause RetryLater records (longer
	// ones are cut at a character boundary).
	maxRetryCauseBytes = 1024
)

// RetryPolicy says how Manager.RetryLater backs off. The zero value is
// the default policy: 5 attempts, a 1 s base, a 5 min cap.
//
// After the n-th failed attempt the flow waits d/2 + r*d/2, where
// d = min(Cap, Base*2^(n-1)) and r is drawn from Rand in [0, 1): an
// exponential backoff with jitter that never waits less than half the
// step, so a fleet that failed together does not retry together. With
// the defaults the waits are about 1 s, 2 s, 4 s, 8 s (each between half
// and all of it), then the fifth failure fails the flow.
type RetryPolicy struct {
	// MaxAttempts is how many attempts the flow gets in all, the first
	// one included (default 5; 1 means the first failure fails the flow).
	MaxAttempts int
	// Base is the backoff after the first failed attempt (default 1 s).
	Base time.Duration
	// Cap bounds every backoff (default 5 min; at least Base).
	Cap time.Duration
	// Rand returns the jitter, a number in [0, 1) (default: math/rand/v2's
	// Float64, safe for concurrent use). Tests set it to make the
	// backoff exact. It must be safe for concurrent use if the policy is
	// shared.
	Rand func() float64
}

// withDefaults fills the zero fields and checks the others.
func (p RetryPolicy) withDefaults() (RetryPolicy, error) {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = defaultRetryMaxAttempts
	}
	if p.Base == 0 {
		p.Base = defaultRetryBase
	}
	if p.Cap == 0 {
		p.Cap = max(defaultRetryCap, p.Base)
	}
	if p.Rand == nil {
		p.Rand = rand.Float64
	}
	switch {
	case p.MaxAttempts < 0:
		return p, fmt.Errorf("%w: retry policy: max attempts %d is negative", ErrInvalidData, p.MaxAttempts)
	case p.MaxAttempts > maxRevision:
		return p, fmt.Errorf("%w: retry policy: max attempts %d is over %d, the most a flow counts to", ErrInvalidData, p.MaxAttempts, maxRevision)
	case p.Base < 0 || p.Cap < 0:
		return p, fmt.Errorf("%w: retry policy: negative base %s or cap %s", ErrInvalidData, p.Base, p.Cap)
	case p.Cap < p.Base:
		return p, fmt.Errorf("%w: retry policy: cap %s is below base %s", ErrInvalidData, p.Cap, p.Base)
	}
	return p, nil
}

// Backoff returns how long to wait after the attempt-th failed attempt
// (1 for the first) under the policy's defaults, drawing the jitter from
// Rand. An attempt below 1 counts as 1.
func (p RetryPolicy) Backoff(attempt int) time.Duration {
	q, err := p.withDefaults()
	if err != nil {
		return 0
	}
	return q.backoff(attempt)
}

func (p RetryPolicy) backoff(attempt int) time.Duration {
	d := p.Base
	for i := 1; i < attempt && d < p.Cap; i++ {
		d *= 2
	}
	d = min(d, p.Cap)
	r := p.Rand()
	if r < 0 || r >= 1 || r != r {
		r = 0
	}
	return d/2 + time.Duration(r*float64(d/2))
}

// RetryLater records a failed attempt of a running flow under policy:
// the flow's Attempts grows by one and, while it is below MaxAttempts,
// the flow waits on a timer at now + policy backoff (with jitter); any
// WaitEngine resumes it when due like any timer, and a worker claims it
// again. The wait is {"kind":"timer","at":…,"attempt":n}, and the
// audit log shows a waiting event whose payload adds "retry":
// {"attempt","max_attempts","error","backoff_ms"}. The attempt that reaches MaxAttempts fails the flow instead,
// with the reason "gave up after <m> attempts: <cause>" (merged into the
// state as by Fail); check the returned flow's Status. cause is required
// and cut to 1024 bytes. A flow that is not running is refused
// as by SetWaiting, and WithLease and IfRevision fence it as any
// mutation. It costs two round trips (the count is read first) and
// retries by itself when another writer moved the count meanwhile.
func (m *Manager) RetryLater(ctx context.Context, id uuid.UUID, policy RetryPolicy, cause string, opts ...MutationOption) (*Flow, error) {
	cause = strings.TrimSpace(cause)
	if cause == "" {
		return nil, fmt.Errorf("%w: a retry needs the cause of the failure", ErrInvalidData)
	}
	cause = truncateUTF8(cause, maxRetryCauseBytes)
	p, err := policy.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := m.store.checkLayout(ctx); err != nil {
		return nil, err
	}
	seen, err := m.store.client.HGet(ctx, m.store.keys.flow(id), "att").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("taskflow: retry flow %s: %w", id, err)
	}
	attempts, _ := strconv.Atoi(seen)
	mut := applyMutationOptions(opts)
	for try := 0; ; try++ {
		f, err := m.store.retry(ctx, id, p, cause, attempts, mut)
		var moved *attemptsMoved
		if errors.As(err, &moved) && try < 10 {
			attempts = moved.actual
			continue
		}
		if moved != nil {
			return nil, fmt.Errorf("taskflow: retry flow %s: the attempts count keeps moving", id)
		}
		return f, err
	}
}

// ResetAttempts sets a flow's attempts count back to zero, e.g. after the
// step that was retried succeeded, so the next step gets the whole
// budget. It appends an attempts_reset event; on a flow with no attempts
// it changes nothing and returns the flow. A terminal or cancel-pending
// flow is refused as by UpdateState.
func (m *Manager) ResetAttempts(ctx context.Context, id uuid.UUID, opts ...MutationOption) (*Flow, error) {
	mut := applyMutationOptions(opts)
	_, nowMs := m.store.clock()
	args := append(m.store.head(id, nowMs, mut), "reset", "", "", "", "", "", "", "none")
	f, _, err := m.store.runFlowScript(ctx, m.store.scripts.retry, id, m.store.keys.flowKeys(id, ""), args)
	return f, err
}

// retry runs retry.lua for the attempt after attempts.
func (s *RedisStore) retry(ctx context.Context, id uuid.UUID, p RetryPolicy, cause string, attempts int, mut mutation) (*Flow, error) {
	now, nowMs := s.clock()
	attempt := attempts + 1
	at := now.Add(p.backoff(attempt)).Truncate(time.Millisecond)
	// The wait stays under 64 bytes, Redis's default limit for a compact
	// hash value (hash-max-listpack-value): a longer one would turn the
	// flow's hash into a hash table for good, about 500 bytes more. The
	// cause goes into the event.
	wait := `{"kind":"timer","at":"` + at.UTC().Format(time.RFC3339Nano) + `","attempt":` + strconv.Itoa(attempt) + `}`
	info, err := marshalJSON(map[string]any{"attempt": attempt, "max_attempts": p.MaxAttempts, "error": cause, "backoff_ms": at.Sub(now).Milliseconds()})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidData, err)
	}
	reason := fmt.Sprintf("gave up after %d attempts: %s", attempt, cause)
	failed, _ := marshalJSON(map[string]any{"reason": reason, "attempts": attempt})
	failure, _ := marshalJSON(map[string]any{
		"failure": map[string]string{"reason": reason, "at": now.Format(time.RFC3339)},
	})
	state, err := s.stateArgs("failure", failure, true)
	if err != nil {
		return nil, err
	}
	args := append(s.head(id, nowMs, mut), "retry", strconv.Itoa(attempts), strconv.Itoa(p.MaxAttempts),
		wait, strconv.FormatInt(at.UnixMilli(), 10), `{"wait":`+wait+`,"retry":`+string(info)+`}`, string(failed))
	args = append(args, state...)
	f, _, err := s.runFlowScript(ctx, s.scripts.retry, id, s.keys.flowKeys(id, ""), args)
	s.relayEnded(ctx, f) // a last attempt fails the flow
	if err != nil {
		var te *TransitionError
		if errors.As(err, &te) {
			te.To = StatusWaiting
			if attempt >= p.MaxAttempts {
				te.To = StatusFailed
			}
		}
		var moved *attemptsMoved
		if errors.As(err, &moved) {
			return nil, err
		}
		return f, fmt.Errorf("taskflow: retry flow %s: %w", id, err) // f: nil unless applied
	}
	return f, nil
}

// truncateUTF8 cuts s to at most n bytes at a character boundary.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
