// Package observe holds the hooks through which a metrics or tracing
// system watches a taskflow flow space, without taskflow depending on it
// and without the integration depending on taskflow's internals:
// extra/otel and extra/prometheus are two such integrations.
//
// Build an Observer, set the hooks you need, and pass it to the store
// with taskflow.WithObserver; Join combines several. The hooks are
// called synchronously, after the fact, on the goroutine that did the
// work: they must be quick and safe for concurrent use, and must not
// call back into the store. An unset hook costs nothing.
//
// The package imports nothing of taskflow: what a hook learns of a flow
// is a Flow (its id, status and trace parent), names and counters are
// plain strings and ints.
package observe

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Observer receives what a flow space does. Every field is optional.
type Observer struct {
	// Op is called after every run of a mutation script (create,
	// transition, update_state, request_cancel, write_flow, record_step,
	// insert_step, claim, extend_lease, release_lease, expire_lease,
	// prune_flow), whether it applied, was refused or failed.
	Op func(ctx context.Context, ev Op)
	// Tick is called after every engine tick.
	Tick func(ctx context.Context, ev Tick)
	// Claim is called after every Claim call, whether it leased a flow,
	// found none within its wait, or failed.
	Claim func(ctx context.Context, ev Claim)
	// Bridge is called after the resume bridge handled one message
	// (acknowledged it, or left it pending after a transient error).
	Bridge func(ctx context.Context, ev Bridge)
	// TraceParent, when set, returns the W3C traceparent of the call
	// creating a flow (from ctx); a non-empty, well-formed value is kept
	// in the flow record (taskflow.Flow.TraceParent) so later work on the
	// flow can link back.
	TraceParent func(ctx context.Context) string
}

// Flow is what a hook learns of a flow a call returned.
type Flow struct {
	ID uuid.UUID
	// Status is the flow's status after the call ("created", "running",
	// "waiting", "finished", "failed", "cancelled").
	Status string
	// TraceParent is the W3C traceparent of the call that created the
	// flow (taskflow.Flow.TraceParent), "" when none was kept.
	TraceParent string
}

// Op describes one script run.
type Op struct {
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
	// Flow is the flow the script returned, nil when it was refused,
	// failed, or returns no flow.
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

// Tick describes one engine tick: the counters of its report
// (taskflow.TickReport), when it started and how long it took.
type Tick struct {
	Scanned      int
	Resumed      int
	Cancelled    int
	StillWaiting int
	Errors       int
	// LeasesExpired counts leases that ran out: their running flows went
	// back on the ready queues. Not part of Scanned.
	LeasesExpired int
	// Dropped counts index entries the tick could not act on and removed.
	// Not part of Scanned.
	Dropped int
	// Truncated is true when the tick stopped with entries still due.
	Truncated bool
	// EarlyRedriven counts kept events whose unfinished delivery the tick
	// finished. Not part of Scanned.
	EarlyRedriven int
	// Relayed counts relay entries (children's outcomes for their
	// parents, parents' children to close) the tick drove. Not part of
	// Scanned.
	Relayed int
	// Fired and Skipped count the schedule fires the tick made (a flow
	// each) and skipped (overlap or catch-up policy). Not part of
	// Scanned.
	Fired, Skipped int
	// Err is the first error the tick met, nil when none.
	Err      error
	Start    time.Time
	Duration time.Duration
}

// Claim describes one Claim call.
type Claim struct {
	ControllerID string
	WorkerID     string
	// Flow is the flow claimed, nil when nothing was.
	Flow *Flow
	// LeaseExpiresAt is when the lease taken ends, zero when nothing was
	// claimed.
	LeaseExpiresAt time.Time
	Err            error
	// Start is when Claim was called; Duration includes its wait.
	Start    time.Time
	Duration time.Duration
}

// Bridge describes one resume-bridge message.
type Bridge struct {
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

// Join returns an observer that calls each of obs in turn (nil ones are
// skipped), e.g. OpenTelemetry and Prometheus together. Its TraceParent
// is the first non-empty answer.
func Join(obs ...*Observer) *Observer {
	var list []*Observer
	for _, o := range obs {
		if o != nil {
			list = append(list, o)
		}
	}
	return &Observer{
		Op:     each(list, func(o *Observer) func(context.Context, Op) { return o.Op }),
		Tick:   each(list, func(o *Observer) func(context.Context, Tick) { return o.Tick }),
		Claim:  each(list, func(o *Observer) func(context.Context, Claim) { return o.Claim }),
		Bridge: each(list, func(o *Observer) func(context.Context, Bridge) { return o.Bridge }),
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

// each returns a hook that calls the hook of every observer in list that
// has one (hook picks it).
func each[E any](list []*Observer, hook func(*Observer) func(context.Context, E)) func(context.Context, E) {
	return func(ctx context.Context, ev E) {
		for _, o := range list {
			if h := hook(o); h != nil {
				h(ctx, ev)
			}
		}
	}
}
