package taskflow

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/observe"
)

// WithObserver sets the store's observer (default none): its hooks see
// every mutation script, tick, Claim and resume-bridge message, and may
// give new flows a trace parent (see package observe). A nil observer,
// or none, costs nothing: no clock read, no allocation.
func WithObserver(o *observe.Observer) StoreOption {
	return func(c *storeConfig) { c.obs = o }
}

// observedFlow is what an observer learns of f (nil for nil).
func observedFlow(f *Flow) *observe.Flow {
	if f == nil {
		return nil
	}
	return &observe.Flow{ID: f.ID, Status: string(f.Status), TraceParent: f.TraceParent}
}

// opMeta is what a caller knows about a script run before it runs.
type opMeta struct {
	event    EventKind
	waitKind string
}

// observeOp reports one script run to the observer. Callers check
// s.obs != nil && s.obs.Op != nil first, so an unset hook costs nothing.
// raw is the script's error as Redis returned it, err what the caller
// gets.
func (s *RedisStore) observeOp(ctx context.Context, sc *script, meta opMeta, id uuid.UUID, start time.Time, f *Flow, raw, err error) {
	ev := observe.Op{Op: sc.name, Event: string(meta.event), WaitKind: meta.waitKind, FlowID: id,
		Flow: observedFlow(f), Err: err, Start: start, Duration: time.Since(start)}
	if raw != nil {
		ev.Flow = nil
		ev.Code = refusalCode(raw)
	} else if err != nil {
		ev.Flow = nil
		ev.Code = "ERROR"
	}
	s.obs.Op(ctx, ev)
}

// observing reports whether script runs are observed.
func (s *RedisStore) observing() bool { return s.obs != nil && s.obs.Op != nil }

// refusalCode returns the refusal code of a script's raw error (the
// first word of its error reply, when it is one of ours), or "ERROR".
func refusalCode(raw error) string {
	var rerr redis.Error
	if !errors.As(raw, &rerr) {
		return "ERROR"
	}
	code, _, _ := strings.Cut(strings.TrimPrefix(rerr.Error(), "ERR "), " ")
	if code == "" || strings.TrimFunc(code, func(r rune) bool { return r >= 'A' && r <= 'Z' }) != "" {
		return "ERROR"
	}
	return code
}

// waitKindOfGuard names what a transition's guard resumes on.
func waitKindOfGuard(guard string) string {
	switch {
	case guard == "timer":
		return string(WaitKindTimer)
	case strings.HasPrefix(guard, "corr:"):
		return string(WaitKindExternalEvent)
	}
	return string(WaitKindManual)
}

// observeDeferred reports a runFlowScript run when it returns.
func (s *RedisStore) observeDeferred(ctx context.Context, sc *script, meta []opMeta, id uuid.UUID, start time.Time, f **Flow, raw, err *error) {
	var m opMeta
	if len(meta) > 0 {
		m = meta[0]
	}
	s.observeOp(ctx, sc, m, id, start, *f, *raw, *err)
}

// observePipelined reports the mutation scripts of one pipeline, each
// with the pipeline's duration.
func (s *RedisStore) observePipelined(ctx context.Context, calls []scriptCall, metas []opMeta, vals []any, errs []error, start time.Time) {
	for i, c := range calls {
		if !c.script.observed {
			continue // a read script (page_after, verify_flow)
		}
		var m opMeta
		if len(metas) == len(calls) {
			m = metas[i]
		}
		idStr, _ := c.args[0].(string)
		id, _ := uuid.Parse(idStr)
		var f *Flow
		if errs[i] == nil {
			f, _ = decodeReply(id, vals[i])
		}
		s.observeOp(ctx, c.script, m, id, start, f, errs[i], errs[i])
	}
}

// observeStart returns the start time of an observed run (zero when
// script runs are not observed: no clock read).
func (s *RedisStore) observeStart() time.Time {
	if s.observing() {
		return time.Now()
	}
	return time.Time{}
}

// observeRun reports a script run that returns no flow.
func (s *RedisStore) observeRun(ctx context.Context, sc *script, id uuid.UUID, start time.Time, raw error) {
	if s.observing() {
		s.observeOp(ctx, sc, opMeta{}, id, start, nil, raw, scriptError(raw, id))
	}
}

func observeClaim(ctx context.Context, o *observe.Observer, controllerID, workerID string, start time.Time, f **Flow, l **Lease, err *error) {
	ev := observe.Claim{ControllerID: controllerID, WorkerID: workerID, Flow: observedFlow(*f), Err: *err,
		Start: start, Duration: time.Since(start)}
	if *l != nil {
		ev.LeaseExpiresAt = (*l).ExpiresAt
	}
	o.Claim(ctx, ev)
}

// traceParent returns the observer's traceparent for a new flow, or ""
// when there is none or it is not a well-formed W3C traceparent
// (version-traceid-parentid-flags, lowercase hex).
func (s *RedisStore) traceParent(ctx context.Context) string {
	if s.obs == nil || s.obs.TraceParent == nil {
		return ""
	}
	tp := s.obs.TraceParent(ctx)
	if !validTraceParent(tp) {
		return ""
	}
	return tp
}

func validTraceParent(tp string) bool {
	if len(tp) != 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' {
		return false
	}
	for i := 0; i < len(tp); i++ {
		if i == 2 || i == 35 || i == 52 {
			continue
		}
		c := tp[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return tp[:2] != "ff" && tp[3:35] != strings.Repeat("0", 32) && tp[36:52] != strings.Repeat("0", 16)
}
