package taskflow

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Observer receives what a flow space does, so a metrics or tracing
// system can plug in without taskflow depending on it (extra/otel and
// extra/prometheus are two). Set it with WithObserver; every field is
// optional. The functions are called synchronously, after the fact, on
// the goroutine that did the work: they must be quick and safe for
// concurrent use, and must not call back into the store.
type Observer struct {
	// Op is called after every run of a mutation script (create,
	// transition, update_state, request_cancel, write_flow, record_step,
	// insert_step, claim, extend_lease, release_lease, expire_lease,
	// prune_flow), whether it applied, was refused or failed.
	Op func(ctx context.Context, ev OpEvent)
	// Tick is called after every engine tick.
	Tick func(ctx context.Context, ev TickEvent)
	// Claim is called after every Claim call, whether it leased a flow,
	// found none within its wait, or failed.
	Claim func(ctx context.Context, ev ClaimEvent)
	// Bridge is called after the resume bridge handled one message
	// (acknowledged it, or left it pending after a transient error).
	Bridge func(ctx context.Context, ev BridgeEvent)
	// TraceParent, when set, returns the W3C traceparent of the call
	// creating a flow (from ctx); a non-empty value is kept in the flow
	// record (Flow.TraceParent) so later work on the flow can link back.
	TraceParent func(ctx context.Context) string
}

// OpEvent describes one script run.
type OpEvent struct {
	// Op is the script's name, e.g. "transition" (bounded: one per script).
	Op string
	// Event is the audit event kind the mutation appends when it is known
	// before the run ("started", "resumed", "waiting", ...); "" otherwise.
	Event string
	// WaitKind, on a resume, says what resumed the flow: "timer" (a
	// tick), "external_event" (a matching event) or "manual" (a direct
	// Resume call); "" on other operations.
	WaitKind string
	// FlowID is the flow the script ran on.
	FlowID uuid.UUID
	// Flow is the flow record the script returned (its state may be nil),
	// nil when it was refused, failed, or returns no flow.
	Flow *Flow
	// Code is "" when the script applied; else the refusal code
	// (NOTFOUND, REVISION, TERMINAL, CANCELPENDING, ILLEGAL, TOOLARGE,
	// NOMATCH, EXISTS, DUPSTEP, IMMUTABLE, LEASELOST, BADWAIT) or "ERROR"
	// for anything else (Redis unreachable, a timeout).
	Code string
	// Err is the error the caller got (nil when Code is "").
	Err error
	// Start is when the run started, Duration how long it took (the
	// round trip included).
	Start    time.Time
	Duration time.Duration
}

// TickEvent describes one engine tick.
type TickEvent struct {
	Report   TickReport
	Start    time.Time
	Duration time.Duration
}

// ClaimEvent describes one Claim call.
type ClaimEvent struct {
	ControllerID string
	WorkerID     string
	// Flow and Lease are what was claimed, nil when nothing was.
	Flow  *Flow
	Lease *Lease
	Err   error
	// Start is when Claim was called; Duration includes its wait.
	Start    time.Time
	Duration time.Duration
}

// BridgeEvent describes one resume-bridge message.
type BridgeEvent struct {
	// MessageID is the stream entry's id.
	MessageID string
	// FlowID is the request's flow (uuid.Nil for a by-correlation one).
	FlowID uuid.UUID
	Topic  string
	// Outcome is "resumed" (at least one flow), "nomatch" (none waiting),
	// "malformed", "failed" (a permanent error, acknowledged) or "retry"
	// (a transient error: the message stays pending).
	Outcome string
	// Resumed lists the flows the message resumed.
	Resumed []*Flow
	// Claimed is true for a message taken over from a quiet consumer.
	Claimed  bool
	Err      error
	Start    time.Time
	Duration time.Duration
}

// WithObserver sets the store's observer (default none). A nil observer,
// or none, costs nothing: no clock read, no allocation.
func WithObserver(o *Observer) StoreOption {
	return func(c *storeConfig) { c.obs = o }
}

// Observer returns the store's observer, nil when none.
func (s *RedisStore) Observer() *Observer { return s.obs }

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
	ev := OpEvent{Op: sc.name, Event: string(meta.event), WaitKind: meta.waitKind, FlowID: id,
		Flow: f, Err: err, Start: start, Duration: time.Since(start)}
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

// tickMetas describes a tick's script runs to the observer (nil when
// script runs are not observed).
func (s *RedisStore) tickMetas(kinds []entryKind) []opMeta {
	if !s.observing() {
		return nil
	}
	out := make([]opMeta, len(kinds))
	for i, k := range kinds {
		switch k {
		case entryTimer:
			out[i] = opMeta{event: EventResumed, waitKind: string(WaitKindTimer)}
		case entryCancel:
			out[i] = opMeta{event: EventCancelled}
		}
	}
	return out
}

func observeTick(ctx context.Context, o *Observer, start time.Time, rep *TickReport) {
	o.Tick(ctx, TickEvent{Report: *rep, Start: start, Duration: time.Since(start)})
}

func observeClaim(ctx context.Context, o *Observer, controllerID, workerID string, start time.Time, f **Flow, l **Lease, err *error) {
	o.Claim(ctx, ClaimEvent{ControllerID: controllerID, WorkerID: workerID, Flow: *f, Lease: *l, Err: *err,
		Start: start, Duration: time.Since(start)})
}

// observeBridge reports one bridge message; herr is what handle returned
// (an error there means the message stays pending).
func observeBridge(ctx context.Context, o *Observer, ev *BridgeEvent, herr *error) {
	if *herr != nil {
		ev.Outcome, ev.Err = "retry", *herr
	}
	ev.Duration = time.Since(ev.Start)
	o.Bridge(ctx, *ev)
}

// bridgeOutcome names what a message's handling did.
func bridgeOutcome(resumed int, err error) string {
	switch {
	case err != nil && isPermanent(err):
		return "failed"
	case err != nil:
		return "retry"
	case resumed > 0:
		return "resumed"
	}
	return "nomatch"
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

// JoinObservers returns an observer that calls each of obs in turn (nil
// ones are skipped), e.g. OpenTelemetry and Prometheus together. Its
// TraceParent is the first non-empty answer.
func JoinObservers(obs ...*Observer) *Observer {
	var list []*Observer
	for _, o := range obs {
		if o != nil {
			list = append(list, o)
		}
	}
	return &Observer{
		Op: func(ctx context.Context, ev OpEvent) {
			for _, o := range list {
				if o.Op != nil {
					o.Op(ctx, ev)
				}
			}
		},
		Tick: func(ctx context.Context, ev TickEvent) {
			for _, o := range list {
				if o.Tick != nil {
					o.Tick(ctx, ev)
				}
			}
		},
		Claim: func(ctx context.Context, ev ClaimEvent) {
			for _, o := range list {
				if o.Claim != nil {
					o.Claim(ctx, ev)
				}
			}
		},
		Bridge: func(ctx context.Context, ev BridgeEvent) {
			for _, o := range list {
				if o.Bridge != nil {
					o.Bridge(ctx, ev)
				}
			}
		},
		TraceParent: func(ctx context.Context) string {
			for _, o := range list {
				if o.TraceParent != nil {
					if tp := o.TraceParent(ctx); tp != "" {
						return tp
					}
				}
			}
			return ""
		},
	}
}
