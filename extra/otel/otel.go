// Package tfotel traces and measures a taskflow flow space with
// OpenTelemetry.
//
// NewObserver returns an observe.Observer (set it with
// taskflow.WithObserver) that makes a span for every mutation script
// (create, transition, claim, ...), tick, Claim call and resume-bridge
// message, and records metrics. Spans follow the OpenTelemetry semantic
// conventions for database client calls where they apply (db.system.name
// "redis", db.operation.name the script, db.response.status_code the
// refusal code, error.type).
//
// A flow carries the trace context of the call that created it: the
// observer gives taskflow the W3C traceparent of the creating context,
// kept in the flow record (taskflow.Flow.TraceParent). Every later span
// about the flow, on any worker, engine or bridge, in any process, days
// later, has a span link to that context: one flow, one story. A child
// flow started outside any trace carries its parent's
// (taskflow.Manager.StartChild), so its spans, its create's included,
// link to the request that created the parent.
//
// Spans are recorded after the fact, with the measured start and end
// times, as children of the span in the caller's context.
package tfotel

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/observe"
)

// ScopeName is the instrumentation scope of the tracer and meter.
const ScopeName = "github.com/taskflow-dev/taskflow/extra/otel"

// Attribute keys specific to taskflow (the others are semantic
// conventions).
const (
	AttrFlowID       = attribute.Key("taskflow.flow.id")
	AttrEvent        = attribute.Key("taskflow.event")
	AttrWaitKind     = attribute.Key("taskflow.wait.kind")
	AttrOutcome      = attribute.Key("taskflow.outcome")
	AttrController   = attribute.Key("taskflow.controller.id")
	AttrWorker       = attribute.Key("taskflow.worker.id")
	AttrFlowStatus   = attribute.Key("taskflow.flow.status")
	AttrLinkKind     = attribute.Key("taskflow.link")
	AttrBridgeClaims = attribute.Key("taskflow.bridge.claimed")
	// AttrConcurrencyKey is the concurrency key of the key gauges
	// (RegisterStats): only keys with a limit, at most 1,000.
	AttrConcurrencyKey = attribute.Key("taskflow.concurrency.key")
)

// Option configures NewObserver.
type Option func(*config)

type config struct {
	tp trace.TracerProvider
	mp metric.MeterProvider
}

// WithTracerProvider sets where spans go (default otel.GetTracerProvider()).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tp = tp }
}

// WithMeterProvider sets where metrics go (default otel.GetMeterProvider()).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.mp = mp }
}

type observer struct {
	tracer trace.Tracer

	ops       metric.Int64Counter
	refusals  metric.Int64Counter
	duration  metric.Float64Histogram
	resumes   metric.Int64Counter
	expiries  metric.Int64Counter
	ticks     metric.Int64Counter
	tickDur   metric.Float64Histogram
	fires     metric.Int64Counter
	skips     metric.Int64Counter
	claims    metric.Int64Counter
	bridgeMsg metric.Int64Counter
}

var traceContext = propagation.TraceContext{}

// NewObserver returns an observer that traces and measures a flow space.
// Metrics (every name under "taskflow." but the semantic convention's
// db.client.operation.duration):
//
//	taskflow.operations            counter  {db.operation.name, taskflow.outcome: ok|refused|error}
//	taskflow.operation.refusals    counter  {db.operation.name, db.response.status_code}
//	db.client.operation.duration   histogram, s {db.system.name, db.operation.name}
//	taskflow.resumes               counter  {taskflow.wait.kind: timer|external_event|manual}
//	taskflow.lease.expiries        counter
//	taskflow.ticks                 counter
//	taskflow.tick.duration         histogram, s
//	taskflow.tick.schedule_fires   counter  (schedule fires a tick made, a flow each)
//	taskflow.tick.schedule_skips   counter  (schedule fires a tick skipped: overlap, catch-up)
//	taskflow.claims                counter  {taskflow.outcome: claimed|empty|error}
//	taskflow.bridge.messages       counter  {taskflow.outcome: resumed|nomatch|malformed|failed|retry}
//
// No metric has a flow id attribute. RegisterStats adds the flow space's
// gauges (tick lag among them).
func NewObserver(opts ...Option) (*observe.Observer, error) {
	cfg := config{}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.tp == nil {
		cfg.tp = otel.GetTracerProvider()
	}
	if cfg.mp == nil {
		cfg.mp = otel.GetMeterProvider()
	}
	o := &observer{tracer: cfg.tp.Tracer(ScopeName)}
	m := cfg.mp.Meter(ScopeName)
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	histogram := func(name, desc string) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
		errs = append(errs, err)
		return h
	}
	o.ops = counter("taskflow.operations", "{operation}", "Mutation scripts run, by operation and outcome.")
	o.refusals = counter("taskflow.operation.refusals", "{operation}", "Mutation scripts refused, by operation and refusal code.")
	o.duration = histogram("db.client.operation.duration", "Duration of taskflow's Redis scripts, round trip included.")
	o.resumes = counter("taskflow.resumes", "{flow}", "Waiting flows resumed, by what resumed them.")
	o.expiries = counter("taskflow.lease.expiries", "{lease}", "Leases that ran out and were collected by a tick.")
	o.ticks = counter("taskflow.ticks", "{tick}", "Engine ticks.")
	o.tickDur = histogram("taskflow.tick.duration", "Duration of engine ticks.")
	o.fires = counter("taskflow.tick.schedule_fires", "{fire}", "Schedule fires (a flow each) made by ticks.")
	o.skips = counter("taskflow.tick.schedule_skips", "{fire}", "Schedule fires skipped by ticks (overlap or catch-up policy).")
	o.claims = counter("taskflow.claims", "{call}", "Claim calls, by outcome.")
	o.bridgeMsg = counter("taskflow.bridge.messages", "{message}", "Resume-bridge messages handled, by outcome.")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &observe.Observer{
		Op: o.op, Tick: o.tick, Claim: o.claim, Bridge: o.bridge, TraceParent: TraceParent,
	}, nil
}

// TraceParent returns the W3C traceparent of the span in ctx, "" when
// ctx holds no valid span context.
func TraceParent(ctx context.Context) string {
	c := propagation.MapCarrier{}
	traceContext.Inject(ctx, c)
	return c["traceparent"]
}

// OriginLink returns the span link to the context that created f, and
// false when f carries none.
func OriginLink(f *taskflow.Flow) (trace.Link, bool) {
	if f == nil {
		return trace.Link{}, false
	}
	return originLink(f.TraceParent)
}

// originLink is OriginLink of a flow with trace parent tp.
func originLink(tp string) (trace.Link, bool) {
	if tp == "" {
		return trace.Link{}, false
	}
	sc := trace.SpanContextFromContext(traceContext.Extract(context.Background(),
		propagation.MapCarrier{"traceparent": tp}))
	if !sc.IsValid() {
		return trace.Link{}, false
	}
	return trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{AttrLinkKind.String("flow.created")}}, true
}

// sameSpan reports whether a and b name the same span (Equal also
// compares whether each came from another process).
func sameSpan(a, b trace.SpanContext) bool {
	return a.TraceID() == b.TraceID() && a.SpanID() == b.SpanID()
}

// span records a finished span from start to start+d.
func (o *observer) span(ctx context.Context, name string, start time.Time, d time.Duration, kind trace.SpanKind,
	attrs []attribute.KeyValue, links []trace.Link, err error, code string) {
	_, sp := o.tracer.Start(ctx, name, trace.WithTimestamp(start), trace.WithSpanKind(kind),
		trace.WithAttributes(attrs...), trace.WithLinks(links...))
	if err != nil && code == "ERROR" {
		sp.RecordError(err, trace.WithTimestamp(start.Add(d)))
		sp.SetStatus(codes.Error, err.Error())
	}
	sp.End(trace.WithTimestamp(start.Add(d)))
}

func (o *observer) op(ctx context.Context, ev observe.Op) {
	opAttr := semconv.DBOperationName(ev.Op)
	attrs := []attribute.KeyValue{semconv.DBSystemNameRedis, opAttr, AttrFlowID.String(ev.FlowID.String())}
	if ev.Event != "" {
		attrs = append(attrs, AttrEvent.String(ev.Event))
	}
	if ev.WaitKind != "" {
		attrs = append(attrs, AttrWaitKind.String(ev.WaitKind))
	}
	outcome := "ok"
	switch ev.Code {
	case "":
	case "ERROR":
		outcome = "error"
		attrs = append(attrs, semconv.ErrorTypeOther)
	default:
		outcome = "refused"
		attrs = append(attrs, semconv.DBResponseStatusCode(ev.Code))
	}
	var links []trace.Link
	if ev.Flow != nil {
		attrs = append(attrs, AttrFlowStatus.String(string(ev.Flow.Status)))
		// The create span is a child of the creating context itself,
		// unless the flow's trace context is another's (a child started
		// outside any trace carries its parent's): then it links to it.
		if l, ok := originLink(ev.Flow.TraceParent); ok && (ev.Op != "create" || !sameSpan(l.SpanContext, trace.SpanContextFromContext(ctx))) {
			links = append(links, l)
		}
	}
	o.span(ctx, ev.Op, ev.Start, ev.Duration, trace.SpanKindClient, attrs, links, ev.Err, ev.Code)

	o.ops.Add(ctx, 1, metric.WithAttributes(opAttr, AttrOutcome.String(outcome)))
	if outcome == "refused" {
		o.refusals.Add(ctx, 1, metric.WithAttributes(opAttr, semconv.DBResponseStatusCode(ev.Code)))
	}
	o.duration.Record(ctx, ev.Duration.Seconds(), metric.WithAttributes(semconv.DBSystemNameRedis, opAttr))
	if ev.Code == "" && ev.WaitKind != "" {
		o.resumes.Add(ctx, 1, metric.WithAttributes(AttrWaitKind.String(ev.WaitKind)))
	}
	if ev.Code == "" && ev.Op == "expire_lease" {
		o.expiries.Add(ctx, 1)
	}
}

func (o *observer) tick(ctx context.Context, ev observe.Tick) {
	r := ev
	o.span(ctx, "taskflow.tick", ev.Start, ev.Duration, trace.SpanKindInternal, []attribute.KeyValue{
		attribute.Int("taskflow.tick.resumed", r.Resumed),
		attribute.Int("taskflow.tick.cancelled", r.Cancelled),
		attribute.Int("taskflow.tick.leases_expired", r.LeasesExpired),
		attribute.Int("taskflow.tick.relayed", r.Relayed),
		attribute.Int("taskflow.tick.still_waiting", r.StillWaiting),
		attribute.Int("taskflow.tick.errors", r.Errors),
		attribute.Int("taskflow.tick.schedule_fires", r.Fired),
		attribute.Int("taskflow.tick.schedule_skips", r.Skipped),
	}, nil, r.Err, "ERROR")
	o.ticks.Add(ctx, 1)
	o.tickDur.Record(ctx, ev.Duration.Seconds())
	if r.Fired > 0 {
		o.fires.Add(ctx, int64(r.Fired))
	}
	if r.Skipped > 0 {
		o.skips.Add(ctx, int64(r.Skipped))
	}
}

func (o *observer) claim(ctx context.Context, ev observe.Claim) {
	attrs := []attribute.KeyValue{AttrController.String(ev.ControllerID), AttrWorker.String(ev.WorkerID)}
	outcome := "empty"
	var links []trace.Link
	switch {
	case ev.Err != nil:
		outcome = "error"
		attrs = append(attrs, semconv.ErrorTypeOther)
	case ev.Flow != nil:
		outcome = "claimed"
		attrs = append(attrs, AttrFlowID.String(ev.Flow.ID.String()))
		if l, ok := originLink(ev.Flow.TraceParent); ok {
			links = append(links, l)
		}
	}
	attrs = append(attrs, AttrOutcome.String(outcome))
	o.span(ctx, "taskflow.claim", ev.Start, ev.Duration, trace.SpanKindInternal, attrs, links, ev.Err, "ERROR")
	o.claims.Add(ctx, 1, metric.WithAttributes(AttrOutcome.String(outcome)))
}

func (o *observer) bridge(ctx context.Context, ev observe.Bridge) {
	attrs := []attribute.KeyValue{AttrOutcome.String(ev.Outcome), attribute.String("messaging.message.id", ev.MessageID),
		AttrBridgeClaims.Bool(ev.Claimed)}
	if ev.Topic != "" {
		attrs = append(attrs, attribute.String("taskflow.topic", ev.Topic))
	}
	var links []trace.Link
	for _, f := range ev.Resumed {
		if l, ok := originLink(f.TraceParent); ok {
			links = append(links, l)
		}
	}
	code := ""
	if ev.Outcome == "retry" {
		code = "ERROR"
	}
	o.span(ctx, "taskflow.bridge.message", ev.Start, ev.Duration, trace.SpanKindConsumer, attrs, links, ev.Err, code)
	o.bridgeMsg.Add(ctx, 1, metric.WithAttributes(AttrOutcome.String(ev.Outcome)))
}

// RegisterStats registers observable gauges computed from the flow
// space's Stats at each collection: taskflow.flows {taskflow.flow.status},
// taskflow.ready.depth, taskflow.ready.oldest_age (s) and
// taskflow.ready.stale {taskflow.controller.id}, taskflow.tick.lag (s), taskflow.timers.due,
// taskflow.leases.held, taskflow.leases.expired, taskflow.bridge.backlog,
// taskflow.bridge.pending, taskflow.early_events, taskflow.parents.joining,
// taskflow.relay.pending, taskflow.relay.due, taskflow.schedules,
// taskflow.schedules.paused, taskflow.schedules.due and
// taskflow.schedules.lag (s); and two observable counters, the flow
// space's totals of schedule fires that made a flow and that were
// skipped: taskflow.schedules.fired and taskflow.schedules.skipped; and,
// for each concurrency key with a limit (Manager.SetKeyLimit: at most
// 1,000 keys, never a key a flow merely carries), gauges
// {taskflow.concurrency.key}: taskflow.key.in_flight, taskflow.key.backlog,
// taskflow.key.concurrency_limit (only keys with a concurrency bound) and
// taskflow.key.rate_limit ({claim}/s, only keys with a rate bound). stats
// is usually a Manager's or RedisStore's Stats method. Each collection
// costs one Stats call (two round trips, more with key limits).
// Unregister with the returned registration.
func RegisterStats(mp metric.MeterProvider, stats func(context.Context) (*taskflow.Stats, error)) (metric.Registration, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(ScopeName)
	var errs []error
	gauge := func(name, unit, desc string) metric.Float64ObservableGauge {
		g, err := m.Float64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	flows := gauge("taskflow.flows", "{flow}", "Flows by status.")
	depth := gauge("taskflow.ready.depth", "{flow}", "Flows on a controller's ready queue.")
	age := gauge("taskflow.ready.oldest_age", "s", "How long the oldest flow of a ready queue has waited for a worker.")
	stale := gauge("taskflow.ready.stale", "{flow}", "Flows of a ready queue that have waited for a worker over a minute (Stats.StaleAfter).")
	lag := gauge("taskflow.tick.lag", "s", "How late the most overdue timer is: the engines are not keeping up when it grows.")
	due := gauge("taskflow.timers.due", "{timer}", "Timers due and not yet resumed.")
	held := gauge("taskflow.leases.held", "{lease}", "Leases held.")
	expired := gauge("taskflow.leases.expired", "{lease}", "Leases expired and not yet collected by a tick.")
	backlog := gauge("taskflow.bridge.backlog", "{message}", "Resume-bridge messages no engine has read.")
	pending := gauge("taskflow.bridge.pending", "{message}", "Resume-bridge messages read and not acknowledged.")
	early := gauge("taskflow.early_events", "{event}", "Early events: external events kept for a flow not yet waiting.")
	joining := gauge("taskflow.parents.joining", "{flow}", "Parents waiting on their children (a join).")
	relay := gauge("taskflow.relay.pending", "{entry}", "Work that ended flows left for their parents or children, not done yet.")
	relayDue := gauge("taskflow.relay.due", "{entry}", "Relay work past its grace: the ending call died or failed, and no tick has done it yet.")
	schedules := gauge("taskflow.schedules", "{schedule}", "Schedules, paused ones included.")
	schedPaused := gauge("taskflow.schedules.paused", "{schedule}", "Paused schedules.")
	schedDue := gauge("taskflow.schedules.due", "{schedule}", "Schedules past their next fire that no tick has fired yet.")
	schedLag := gauge("taskflow.schedules.lag", "s", "How late the most overdue schedule is: the engines are not keeping up when it grows.")
	keyInFlight := gauge("taskflow.key.in_flight", "{flow}", "Flows carrying a concurrency key that hold a lease, for each key with a limit.")
	keyBacklog := gauge("taskflow.key.backlog", "{flow}", "Ready flows waiting in the fair group a key names (flows whose first key it is).")
	keyConc := gauge("taskflow.key.concurrency_limit", "{flow}", "How many flows carrying the key may hold a lease at once.")
	keyRate := gauge("taskflow.key.rate_limit", "{claim}/s", "How many flows carrying the key may be claimed per second.")
	total := func(name, desc string) metric.Int64ObservableCounter {
		c, err := m.Int64ObservableCounter(name, metric.WithUnit("{fire}"), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	fired := total("taskflow.schedules.fired", "Schedule fires that made a flow, by every engine of the flow space.")
	skipped := total("taskflow.schedules.skipped", "Schedule fires skipped by their overlap or catch-up policy, by every engine.")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m.RegisterCallback(func(ctx context.Context, ob metric.Observer) error {
		st, err := stats(ctx)
		if err != nil {
			return err
		}
		for status, n := range st.Flows {
			ob.ObserveFloat64(flows, float64(n), metric.WithAttributes(AttrFlowStatus.String(string(status))))
		}
		for _, q := range st.Ready {
			a := metric.WithAttributes(AttrController.String(q.Controller))
			ob.ObserveFloat64(depth, float64(q.Depth), a)
			ob.ObserveFloat64(age, q.OldestAge.Seconds(), a)
			ob.ObserveFloat64(stale, float64(q.Stale), a)
		}
		ob.ObserveFloat64(lag, st.Timers.Lag.Seconds())
		ob.ObserveFloat64(due, float64(st.Timers.Due))
		ob.ObserveFloat64(held, float64(st.Leases.Held))
		ob.ObserveFloat64(expired, float64(st.Leases.Expired))
		ob.ObserveFloat64(backlog, float64(st.Bridge.Backlog))
		ob.ObserveFloat64(pending, float64(st.Bridge.Pending))
		ob.ObserveFloat64(early, float64(st.EarlyEvents))
		ob.ObserveFloat64(joining, float64(st.Joining))
		ob.ObserveFloat64(relay, float64(st.Relay))
		ob.ObserveFloat64(relayDue, float64(st.RelayDue))
		ob.ObserveFloat64(schedules, float64(st.Schedules))
		ob.ObserveFloat64(schedPaused, float64(st.SchedulesPaused))
		ob.ObserveFloat64(schedDue, float64(st.SchedulesDue))
		ob.ObserveFloat64(schedLag, st.ScheduleLag.Seconds())
		ob.ObserveInt64(fired, st.ScheduleFires)
		ob.ObserveInt64(skipped, st.ScheduleSkips)
		for _, k := range st.Keys {
			a := metric.WithAttributes(AttrConcurrencyKey.String(k.Key))
			ob.ObserveFloat64(keyInFlight, float64(k.InFlight), a)
			ob.ObserveFloat64(keyBacklog, float64(k.Backlog), a)
			if k.Concurrency > 0 {
				ob.ObserveFloat64(keyConc, float64(k.Concurrency), a)
			}
			if k.Rate > 0 && k.Per > 0 {
				ob.ObserveFloat64(keyRate, float64(k.Rate)/k.Per.Seconds(), a)
			}
		}
		return nil
	}, flows, depth, age, stale, lag, due, held, expired, backlog, pending, early, joining, relay, relayDue,
		schedules, schedPaused, schedDue, schedLag, fired, skipped, keyInFlight, keyBacklog, keyConc, keyRate)
}
