// Package tfprom exposes a taskflow flow space to Prometheus.
//
// A Collector reports two kinds of metrics. Gauges read from the flow
// space's Stats at scrape time (one Stats call per scrape: two pipelined
// round trips, whatever the number of flows), so any process can serve
// them, even one that runs no worker. Counters and histograms fed by a
// observe.Observer (Collector.Observer, set on the process's store with
// taskflow.WithObserver): what this process did.
//
//	var m *taskflow.Manager
//	c := tfprom.New(func(ctx context.Context) (*taskflow.Stats, error) { return m.Stats(ctx) })
//	store, err := taskflow.NewRedisStore(client, taskflow.WithObserver(c.Observer()))
//	...
//	m = taskflow.NewManager(store)
//	prometheus.MustRegister(c)
//	http.Handle("/metrics", promhttp.Handler())
//
// No label is unbounded: never a flow id. The controller label of the
// ready-queue gauges has one value per controller id, which the
// application defines; the key label of the concurrency-key gauges one
// value per key with a limit (Manager.SetKeyLimit: at most 1,000), never
// a key a flow merely carries.
package tfprom

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/observe"
)

// Namespace is the first part of every metric name.
const Namespace = "taskflow"

// DefaultScrapeTimeout bounds the Stats call of one scrape.
const DefaultScrapeTimeout = 5 * time.Second

// Collector is a prometheus.Collector for one flow space. Register it
// with a prometheus.Registerer; it is safe for concurrent use.
type Collector struct {
	stats   func(context.Context) (*taskflow.Stats, error)
	timeout time.Duration

	up, flows, readyDepth, readyAge, timersPending, timersDue, tickLag *prometheus.Desc
	leasesHeld, leasesExpired, leasesLag, bridgeLen, bridgePending     *prometheus.Desc
	bridgeBacklog, early, joining, relay, relayDue, readyStale         *prometheus.Desc
	schedules, schedulesPaused, schedulesDue, scheduleLag              *prometheus.Desc
	scheduleFires, scheduleSkips                                       *prometheus.Desc
	keyInFlight, keyConcurrency, keyRate, keyBacklog                   *prometheus.Desc

	ops      *prometheus.CounterVec
	refusals *prometheus.CounterVec
	duration *prometheus.HistogramVec
	resumes  *prometheus.CounterVec
	expiries prometheus.Counter
	ticks    prometheus.Counter
	tickDur  prometheus.Histogram
	claims   *prometheus.CounterVec
	bridge   *prometheus.CounterVec
	// tickFires and tickSkips count the schedule fires this process's
	// ticks made and skipped.
	tickFires, tickSkips prometheus.Counter
}

// Option configures New.
type Option func(*Collector)

// WithScrapeTimeout bounds the Stats call of one scrape (default 5 s).
func WithScrapeTimeout(d time.Duration) Option {
	return func(c *Collector) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// New returns a collector whose gauges come from stats, usually a
// Manager's or RedisStore's Stats method (nil: no gauges, only the
// observer's counters).
func New(stats func(context.Context) (*taskflow.Stats, error), opts ...Option) *Collector {
	c := &Collector{stats: stats, timeout: DefaultScrapeTimeout}
	for _, o := range opts {
		o(c)
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
	}
	c.up = d("stats_up", "1 when the last scrape read the flow space's figures, 0 when Redis could not be read.")
	c.flows = d("flows", "Flows in the flow space, by status.", "status")
	c.readyDepth = d("ready_queue_depth", "Running flows waiting for a worker on a controller's ready queue.", "controller")
	c.readyAge = d("ready_queue_oldest_age_seconds", "How long the oldest flow of a controller's ready queue has waited for a worker.", "controller")
	c.readyStale = d("ready_queue_stale", "Flows of a controller's ready queue that have waited for a worker longer than a minute (stuck: no worker claims them).", "controller")
	c.timersPending = d("timers_pending", "Waiting flows with a timer.")
	c.timersDue = d("timers_due", "Timers whose deadline passed and whose flow no tick has resumed yet.")
	c.tickLag = d("tick_lag_seconds", "How late the most overdue timer is; grows when the engines do not keep up.")
	c.leasesHeld = d("leases_held", "Leases in the lease table, expired ones included.")
	c.leasesExpired = d("leases_expired", "Leases whose expiry passed and that no tick has collected yet.")
	c.leasesLag = d("leases_expired_lag_seconds", "How long ago the oldest uncollected lease expired.")
	c.bridgeLen = d("bridge_stream_length", "Resume-bridge messages not yet handled.")
	c.bridgePending = d("bridge_pending", "Resume-bridge messages delivered to an engine and not acknowledged.")
	c.bridgeBacklog = d("bridge_backlog", "Resume-bridge messages no engine has read yet.")
	c.early = d("early_events", "Early events: external events kept because no flow was waiting for them yet.")
	c.joining = d("parents_joining", "Parents waiting on their children (a join); also counted as waiting flows.")
	c.relay = d("relay_pending", "Work that flows which ended left for their parents or children and that is not done yet.")
	c.relayDue = d("relay_due", "Relay work past its 10 s grace: the call that ended the flow died or failed, and no tick has done it yet.")
	c.schedules = d("schedules", "Schedules in the flow space, paused ones included.")
	c.schedulesPaused = d("schedules_paused", "Paused schedules.")
	c.schedulesDue = d("schedules_due", "Schedules whose next fire is past and that no tick has fired yet.")
	c.scheduleLag = d("schedule_lag_seconds", "How late the most overdue schedule is; grows when the engines do not keep up.")
	c.scheduleFires = d("schedule_fires_total", "Schedule fires that made a flow, by every engine of the flow space (a flow-space total).")
	c.scheduleSkips = d("schedule_skips_total", "Schedule fires skipped by their overlap or catch-up policy, by every engine (a flow-space total).")
	c.keyInFlight = d("key_in_flight", "Flows carrying a concurrency key that hold a lease, for each key with a limit.", "key")
	c.keyConcurrency = d("key_concurrency_limit", "How many flows carrying the key may hold a lease at once; only keys with a concurrency bound.", "key")
	c.keyRate = d("key_rate_limit_per_second", "How many flows carrying the key may be claimed per second; only keys with a rate bound.", "key")
	c.keyBacklog = d("key_backlog", "Ready flows waiting in the fair group the key names (flows whose first key it is), for each key with a limit.", "key")

	c.ops = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "operations_total",
		Help: "Mutation scripts this process ran, by operation and outcome (ok, refused, error)."}, []string{"operation", "outcome"})
	c.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "operation_refusals_total",
		Help: "Mutation scripts refused, by operation and refusal code."}, []string{"operation", "code"})
	c.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "operation_duration_seconds",
		Help:    "Duration of mutation scripts, round trip included.",
		Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}}, []string{"operation"})
	c.resumes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "resumes_total",
		Help: "Waiting flows resumed, by what resumed them (timer, external_event, manual)."}, []string{"wait_kind"})
	c.expiries = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "lease_expiries_total",
		Help: "Leases that ran out and were collected by this process's ticks."})
	c.ticks = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "ticks_total",
		Help: "Engine ticks run by this process."})
	c.tickDur = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "tick_duration_seconds",
		Help: "Duration of engine ticks.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 8)})
	c.claims = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "claims_total",
		Help: "Claim calls, by outcome (claimed, empty, error)."}, []string{"outcome"})
	c.tickFires = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "tick_schedule_fires_total",
		Help: "Schedule fires (a flow each) made by this process's ticks."})
	c.tickSkips = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "tick_schedule_skips_total",
		Help: "Schedule fires skipped by this process's ticks (overlap or catch-up policy)."})
	c.bridge = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "bridge_messages_total",
		Help: "Resume-bridge messages handled, by outcome (resumed, nomatch, malformed, failed, retry)."}, []string{"outcome"})
	return c
}

func (c *Collector) vectors() []prometheus.Collector {
	return []prometheus.Collector{c.ops, c.refusals, c.duration, c.resumes, c.expiries, c.ticks, c.tickDur, c.claims, c.bridge, c.tickFires, c.tickSkips}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.flows, c.readyDepth, c.readyAge, c.readyStale, c.timersPending, c.timersDue,
		c.tickLag, c.leasesHeld, c.leasesExpired, c.leasesLag, c.bridgeLen, c.bridgePending, c.bridgeBacklog, c.early,
		c.joining, c.relay, c.relayDue, c.schedules, c.schedulesPaused, c.schedulesDue, c.scheduleLag, c.scheduleFires, c.scheduleSkips,
		c.keyInFlight, c.keyConcurrency, c.keyRate, c.keyBacklog} {
		ch <- d
	}
	for _, v := range c.vectors() {
		v.Describe(ch)
	}
}

// Collect implements prometheus.Collector: it reads Stats once.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range c.vectors() {
		v.Collect(ch)
	}
	if c.stats == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	st, err := c.stats(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	g(c.up, 1)
	for status, n := range st.Flows {
		g(c.flows, float64(n), string(status))
	}
	for _, q := range st.Ready {
		g(c.readyDepth, float64(q.Depth), q.Controller)
		g(c.readyAge, q.OldestAge.Seconds(), q.Controller)
		g(c.readyStale, float64(q.Stale), q.Controller)
	}
	g(c.timersPending, float64(st.Timers.Pending))
	g(c.timersDue, float64(st.Timers.Due))
	g(c.tickLag, st.Timers.Lag.Seconds())
	g(c.leasesHeld, float64(st.Leases.Held))
	g(c.leasesExpired, float64(st.Leases.Expired))
	g(c.leasesLag, st.Leases.ExpiredLag.Seconds())
	g(c.bridgeLen, float64(st.Bridge.Length))
	g(c.bridgePending, float64(st.Bridge.Pending))
	g(c.bridgeBacklog, float64(st.Bridge.Backlog))
	g(c.early, float64(st.EarlyEvents))
	g(c.joining, float64(st.Joining))
	g(c.relay, float64(st.Relay))
	g(c.relayDue, float64(st.RelayDue))
	g(c.schedules, float64(st.Schedules))
	g(c.schedulesPaused, float64(st.SchedulesPaused))
	g(c.schedulesDue, float64(st.SchedulesDue))
	g(c.scheduleLag, st.ScheduleLag.Seconds())
	ch <- prometheus.MustNewConstMetric(c.scheduleFires, prometheus.CounterValue, float64(st.ScheduleFires))
	ch <- prometheus.MustNewConstMetric(c.scheduleSkips, prometheus.CounterValue, float64(st.ScheduleSkips))
	for _, k := range st.Keys {
		g(c.keyInFlight, float64(k.InFlight), k.Key)
		g(c.keyBacklog, float64(k.Backlog), k.Key)
		if k.Concurrency > 0 {
			g(c.keyConcurrency, float64(k.Concurrency), k.Key)
		}
		if k.Rate > 0 && k.Per > 0 {
			g(c.keyRate, float64(k.Rate)/k.Per.Seconds(), k.Key)
		}
	}
}

// Observer returns the observer that feeds the collector's counters; set
// it on the store with taskflow.WithObserver.
func (c *Collector) Observer() *observe.Observer {
	return &observe.Observer{
		Op: func(_ context.Context, ev observe.Op) {
			outcome := "ok"
			switch ev.Code {
			case "":
			case "ERROR":
				outcome = "error"
			default:
				outcome = "refused"
				c.refusals.WithLabelValues(ev.Op, ev.Code).Inc()
			}
			c.ops.WithLabelValues(ev.Op, outcome).Inc()
			c.duration.WithLabelValues(ev.Op).Observe(ev.Duration.Seconds())
			if ev.Code == "" && ev.WaitKind != "" {
				c.resumes.WithLabelValues(ev.WaitKind).Inc()
			}
			if ev.Code == "" && ev.Op == "expire_lease" {
				c.expiries.Inc()
			}
		},
		Tick: func(_ context.Context, ev observe.Tick) {
			c.ticks.Inc()
			c.tickDur.Observe(ev.Duration.Seconds())
			c.tickFires.Add(float64(ev.Fired))
			c.tickSkips.Add(float64(ev.Skipped))
		},
		Claim: func(_ context.Context, ev observe.Claim) {
			outcome := "empty"
			switch {
			case ev.Err != nil:
				outcome = "error"
			case ev.Flow != nil:
				outcome = "claimed"
			}
			c.claims.WithLabelValues(outcome).Inc()
		},
		Bridge: func(_ context.Context, ev observe.Bridge) {
			c.bridge.WithLabelValues(ev.Outcome).Inc()
		},
	}
}
