package tfprom

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/internal/testbackend"
)

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// TestCollector builds a known flow space, scrapes it, and checks the
// gauges, the counters and the linter.
func TestCollector(t *testing.T) {
	for _, b := range testbackend.List(t) {
		t.Run(b.Name, func(t *testing.T) {
			client := b.Client(t)
			prefix := testbackend.Prefix("tfprom")
			testbackend.CleanupKeys(t, client, prefix)
			clk := testbackend.NewClock()
			var m *taskflow.Manager
			c := New(func(ctx context.Context) (*taskflow.Stats, error) { return m.Stats(ctx) })
			store, err := taskflow.NewRedisStore(client, taskflow.WithPrefix(prefix), taskflow.WithClock(clk.Now),
				taskflow.WithObserver(c.Observer()))
			if err != nil {
				t.Fatal(err)
			}
			m = taskflow.NewManager(store)
			defer m.Close()
			ctx := context.Background()
			in := taskflow.CreateManagedInput{ControllerID: "triage", Goal: "g", OwnerSessionKey: "o"}
			for range 3 {
				must[*taskflow.Flow](t)(m.CreateMirrored(ctx, in))
			}
			must[*taskflow.Flow](t)(m.CreateManaged(ctx, in))
			f, _, err := m.Claim(ctx, "triage", "w", time.Second, taskflow.WithClaimWait(0))
			if err != nil || f == nil {
				t.Fatalf("claim %v %v", f, err)
			}
			if _, err := m.StartRunning(ctx, f.ID); err == nil {
				t.Fatal("not refused")
			}
			w := must[*taskflow.Flow](t)(m.CreateMirrored(ctx, in))
			must[*taskflow.Flow](t)(m.SetWaiting(ctx, w.ID, taskflow.WaitTimer(clk.Now().Add(time.Second))))
			clk.Advance(5 * time.Second)

			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(c)
			want := `
# HELP taskflow_flows Flows in the flow space, by status.
# TYPE taskflow_flows gauge
taskflow_flows{status="cancelled"} 0
taskflow_flows{status="created"} 1
taskflow_flows{status="failed"} 0
taskflow_flows{status="finished"} 0
taskflow_flows{status="running"} 3
taskflow_flows{status="waiting"} 1
# HELP taskflow_ready_queue_depth Running flows waiting for a worker on a controller's ready queue.
# TYPE taskflow_ready_queue_depth gauge
taskflow_ready_queue_depth{controller="triage"} 2
# HELP taskflow_ready_queue_oldest_age_seconds How long the oldest flow of a controller's ready queue has waited for a worker.
# TYPE taskflow_ready_queue_oldest_age_seconds gauge
taskflow_ready_queue_oldest_age_seconds{controller="triage"} 5
# HELP taskflow_ready_queue_stale Flows of a controller's ready queue that have waited for a worker longer than a minute (stuck: no worker claims them).
# TYPE taskflow_ready_queue_stale gauge
taskflow_ready_queue_stale{controller="triage"} 0
# HELP taskflow_tick_lag_seconds How late the most overdue timer is; grows when the engines do not keep up.
# TYPE taskflow_tick_lag_seconds gauge
taskflow_tick_lag_seconds 4
# HELP taskflow_leases_expired Leases whose expiry passed and that no tick has collected yet.
# TYPE taskflow_leases_expired gauge
taskflow_leases_expired 1
# HELP taskflow_operation_refusals_total Mutation scripts refused, by operation and refusal code.
# TYPE taskflow_operation_refusals_total counter
taskflow_operation_refusals_total{code="ILLEGAL",operation="transition"} 1
# HELP taskflow_claims_total Claim calls, by outcome (claimed, empty, error).
# TYPE taskflow_claims_total counter
taskflow_claims_total{outcome="claimed"} 1
# HELP taskflow_stats_up 1 when the last scrape read the flow space's figures, 0 when Redis could not be read.
# TYPE taskflow_stats_up gauge
taskflow_stats_up 1
`
			if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
				"taskflow_flows", "taskflow_ready_queue_depth", "taskflow_ready_queue_oldest_age_seconds",
				"taskflow_ready_queue_stale", "taskflow_tick_lag_seconds", "taskflow_leases_expired", "taskflow_operation_refusals_total",
				"taskflow_claims_total", "taskflow_stats_up"); err != nil {
				t.Fatal(err)
			}
			if got := testutil.ToFloat64(c.ops.WithLabelValues("create", "ok")); got != 5 {
				t.Errorf("creates counted %v", got)
			}

			// A tick moves the figures; the counters follow.
			if rep := taskflow.NewWaitEngine(m).Tick(ctx); rep.Resumed != 1 || rep.LeasesExpired != 1 {
				t.Fatalf("tick %+v", rep)
			}
			want = `
# HELP taskflow_tick_lag_seconds How late the most overdue timer is; grows when the engines do not keep up.
# TYPE taskflow_tick_lag_seconds gauge
taskflow_tick_lag_seconds 0
# HELP taskflow_ready_queue_depth Running flows waiting for a worker on a controller's ready queue.
# TYPE taskflow_ready_queue_depth gauge
taskflow_ready_queue_depth{controller="triage"} 4
# HELP taskflow_resumes_total Waiting flows resumed, by what resumed them (timer, external_event, manual).
# TYPE taskflow_resumes_total counter
taskflow_resumes_total{wait_kind="timer"} 1
# HELP taskflow_lease_expiries_total Leases that ran out and were collected by this process's ticks.
# TYPE taskflow_lease_expiries_total counter
taskflow_lease_expiries_total 1
# HELP taskflow_ticks_total Engine ticks run by this process.
# TYPE taskflow_ticks_total counter
taskflow_ticks_total 1
`
			if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "taskflow_tick_lag_seconds",
				"taskflow_ready_queue_depth", "taskflow_resumes_total", "taskflow_lease_expiries_total", "taskflow_ticks_total"); err != nil {
				t.Fatal(err)
			}

			// A minute later the two flows queued at the start have waited
			// over a minute; the two the tick queued have not.
			clk.Advance(58 * time.Second)
			want = `
# HELP taskflow_ready_queue_stale Flows of a controller's ready queue that have waited for a worker longer than a minute (stuck: no worker claims them).
# TYPE taskflow_ready_queue_stale gauge
taskflow_ready_queue_stale{controller="triage"} 2
`
			if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "taskflow_ready_queue_stale"); err != nil {
				t.Fatal(err)
			}

			problems, err := testutil.CollectAndLint(c)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				t.Errorf("lint: %s: %s", p.Metric, p.Text)
			}

			// Served over HTTP, as a scraper sees it.
			srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
			defer srv.Close()
			resp, err := http.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(body), `taskflow_flows{status="running"} 4`) || strings.Contains(string(body), f.ID.String()) {
				t.Fatalf("scrape:\n%s", body)
			}
		})
	}
}

// TestCollectorChildren checks the gauges of flows of flows: a parent
// waiting on its two children, and the relay work a call leaves when it
// dies between ending a child and handing its outcome to the parent.
func TestCollectorChildren(t *testing.T) {
	for _, b := range testbackend.List(t) {
		t.Run(b.Name, func(t *testing.T) {
			client := b.Client(t)
			prefix := testbackend.Prefix("tfprom")
			testbackend.CleanupKeys(t, client, prefix)
			clk := testbackend.NewClock()
			store, err := taskflow.NewRedisStore(client, taskflow.WithPrefix(prefix), taskflow.WithClock(clk.Now))
			if err != nil {
				t.Fatal(err)
			}
			m := taskflow.NewManager(store)
			defer m.Close()
			c := New(m.Stats)
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(c)
			ctx := context.Background()
			gauges := func(joining, relay, due int) {
				t.Helper()
				want := fmt.Sprintf(`
# HELP taskflow_parents_joining Parents waiting on their children (a join); also counted as waiting flows.
# TYPE taskflow_parents_joining gauge
taskflow_parents_joining %d
# HELP taskflow_relay_pending Work that flows which ended left for their parents or children and that is not done yet.
# TYPE taskflow_relay_pending gauge
taskflow_relay_pending %d
# HELP taskflow_relay_due Relay work past its 10 s grace: the call that ended the flow died or failed, and no tick has done it yet.
# TYPE taskflow_relay_due gauge
taskflow_relay_due %d
`, joining, relay, due)
				if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
					"taskflow_parents_joining", "taskflow_relay_pending", "taskflow_relay_due"); err != nil {
					t.Fatal(err)
				}
			}

			p := must[*taskflow.Flow](t)(m.CreateMirrored(ctx, taskflow.CreateManagedInput{ControllerID: "plan", Goal: "g", OwnerSessionKey: "o"}))
			kid := taskflow.CreateManagedInput{ControllerID: "kids", Goal: "part", OwnerSessionKey: "o"}
			must[[]*taskflow.Flow](t)(m.StartChildren(ctx, p.ID, []taskflow.ChildInput{{Key: "a", Flow: kid}, {Key: "b", Flow: kid}}))
			gauges(0, 0, 0)
			must[*taskflow.Flow](t)(m.SetWaiting(ctx, p.ID, taskflow.WaitChildren(taskflow.Join{})))
			gauges(1, 0, 0)

			// One child finishes; its call hands the outcome over at once.
			a, l, err := m.Claim(ctx, "kids", "w", time.Minute, taskflow.WithClaimWait(0))
			if err != nil || a == nil {
				t.Fatalf("claim %v %v", a, err)
			}
			must[*taskflow.Flow](t)(m.Finish(ctx, a.ID, nil, taskflow.WithLease(l)))
			gauges(1, 0, 0)

			// The entry the finish script writes, left as a call that died
			// before relaying leaves it (key and member as documented in
			// keys.go; the hooks that kill a call are not exported).
			relayKey := fmt.Sprintf("%s:{%d}:relay", prefix, store.ShardOf(a.ID))
			if err := client.ZAdd(ctx, relayKey, redis.Z{Score: float64(clk.Now().Add(10 * time.Second).UnixMilli()),
				Member: "d " + a.ID.String()}).Err(); err != nil {
				t.Fatal(err)
			}
			gauges(1, 1, 0)
			clk.Advance(11 * time.Second)
			gauges(1, 1, 1)
			if rep := taskflow.NewWaitEngine(m).Tick(ctx); rep.Relayed != 1 || rep.Err != nil {
				t.Fatalf("tick %+v", rep)
			}
			gauges(1, 0, 0)

			// The second child finishes: the join is met, the parent runs.
			b, l, err := m.Claim(ctx, "kids", "w", time.Minute, taskflow.WithClaimWait(0))
			if err != nil || b == nil {
				t.Fatalf("claim %v %v", b, err)
			}
			must[*taskflow.Flow](t)(m.Finish(ctx, b.ID, nil, taskflow.WithLease(l)))
			if got := must[*taskflow.Flow](t)(m.Get(ctx, p.ID)); got.Status != taskflow.StatusRunning {
				t.Fatalf("parent %s after its children finished", got.Status)
			}
			gauges(0, 0, 0)
		})
	}
}

// TestCollectorDown reports stats_up 0 when the flow space cannot be read.
func TestCollectorDown(t *testing.T) {
	c := New(func(context.Context) (*taskflow.Stats, error) { return nil, errors.New("connection refused") })
	want := "# HELP taskflow_stats_up 1 when the last scrape read the flow space's figures, 0 when Redis could not be read.\n# TYPE taskflow_stats_up gauge\ntaskflow_stats_up 0\n"
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "taskflow_stats_up"); err != nil {
		t.Fatal(err)
	}
}

// TestCollectorSchedules checks the schedule gauges and counters: from
// Stats (the flow space) and from the observed ticks (this process).
func TestCollectorSchedules(t *testing.T) {
	for _, b := range testbackend.List(t) {
		t.Run(b.Name, func(t *testing.T) {
			client := b.Client(t)
			prefix := testbackend.Prefix("tfprom")
			testbackend.CleanupKeys(t, client, prefix)
			clk := testbackend.NewClock()
			var m *taskflow.Manager
			c := New(func(ctx context.Context) (*taskflow.Stats, error) { return m.Stats(ctx) })
			store, err := taskflow.NewRedisStore(client, taskflow.WithPrefix(prefix), taskflow.WithClock(clk.Now),
				taskflow.WithObserver(c.Observer()))
			if err != nil {
				t.Fatal(err)
			}
			m = taskflow.NewManager(store)
			defer m.Close()
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(c)
			ctx := context.Background()
			names := []string{"taskflow_schedules", "taskflow_schedules_paused", "taskflow_schedules_due", "taskflow_schedule_lag_seconds",
				"taskflow_schedule_fires_total", "taskflow_schedule_skips_total", "taskflow_tick_schedule_fires_total", "taskflow_tick_schedule_skips_total"}
			check := func(schedules, paused, due int, lag float64, fires, skips, tickFires, tickSkips int) {
				t.Helper()
				want := fmt.Sprintf(`
# HELP taskflow_schedules Schedules in the flow space, paused ones included.
# TYPE taskflow_schedules gauge
taskflow_schedules %d
# HELP taskflow_schedules_paused Paused schedules.
# TYPE taskflow_schedules_paused gauge
taskflow_schedules_paused %d
# HELP taskflow_schedules_due Schedules whose next fire is past and that no tick has fired yet.
# TYPE taskflow_schedules_due gauge
taskflow_schedules_due %d
# HELP taskflow_schedule_lag_seconds How late the most overdue schedule is; grows when the engines do not keep up.
# TYPE taskflow_schedule_lag_seconds gauge
taskflow_schedule_lag_seconds %g
# HELP taskflow_schedule_fires_total Schedule fires that made a flow, by every engine of the flow space (a flow-space total).
# TYPE taskflow_schedule_fires_total counter
taskflow_schedule_fires_total %d
# HELP taskflow_schedule_skips_total Schedule fires skipped by their overlap or catch-up policy, by every engine (a flow-space total).
# TYPE taskflow_schedule_skips_total counter
taskflow_schedule_skips_total %d
# HELP taskflow_tick_schedule_fires_total Schedule fires (a flow each) made by this process's ticks.
# TYPE taskflow_tick_schedule_fires_total counter
taskflow_tick_schedule_fires_total %d
# HELP taskflow_tick_schedule_skips_total Schedule fires skipped by this process's ticks (overlap or catch-up policy).
# TYPE taskflow_tick_schedule_skips_total counter
taskflow_tick_schedule_skips_total %d
`, schedules, paused, due, lag, fires, skips, tickFires, tickSkips)
				if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
					t.Fatal(err)
				}
			}
			flow := taskflow.CreateManagedInput{ControllerID: "cron", Goal: "g", OwnerSessionKey: "o"}
			check(0, 0, 0, 0, 0, 0, 0, 0)
			must[*taskflow.Schedule](t)(m.CreateSchedule(ctx, taskflow.ScheduleInput{Name: "every-10s", Every: 10 * time.Second, Flow: flow}))
			must[*taskflow.Schedule](t)(m.CreateSchedule(ctx, taskflow.ScheduleInput{Name: "held", Every: time.Second, Paused: true, Flow: flow}))
			check(2, 1, 0, 0, 0, 0, 0, 0)
			// Three fire times pass (at 10, 20, 30 s); at 35 s the schedule
			// is 25 s late (its oldest due fire, at 10 s).
			clk.Advance(35 * time.Second)
			check(2, 1, 1, 25, 0, 0, 0, 0)
			if rep := taskflow.NewWaitEngine(m).Tick(ctx); rep.Fired != 1 || rep.Skipped != 2 || rep.Err != nil {
				t.Fatalf("tick %+v", rep)
			}
			check(2, 1, 0, 0, 1, 2, 1, 2)
			if problems, err := testutil.GatherAndLint(reg, names...); err != nil || len(problems) > 0 {
				t.Fatalf("lint: %v %v", problems, err)
			}
		})
	}
}

// TestCollectorKeys checks the concurrency-key gauges: one series per key
// with a limit (never a key a flow merely carries), the limit gauges only
// for the bounds a key has, and the series gone with the limit.
func TestCollectorKeys(t *testing.T) {
	for _, b := range testbackend.List(t) {
		t.Run(b.Name, func(t *testing.T) {
			client := b.Client(t)
			prefix := testbackend.Prefix("tfprom")
			testbackend.CleanupKeys(t, client, prefix)
			var m *taskflow.Manager
			c := New(func(ctx context.Context) (*taskflow.Stats, error) { return m.Stats(ctx) })
			store, err := taskflow.NewRedisStore(client, taskflow.WithPrefix(prefix))
			if err != nil {
				t.Fatal(err)
			}
			m = taskflow.NewManager(store)
			defer m.Close()
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(c)
			ctx := context.Background()
			names := []string{"taskflow_key_in_flight", "taskflow_key_concurrency_limit", "taskflow_key_rate_limit_per_second", "taskflow_key_backlog"}
			check := func(want string) {
				t.Helper()
				if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
					t.Fatal(err)
				}
			}
			check("")
			for _, l := range []taskflow.KeyLimit{
				{Key: "tenant:acme", Concurrency: 2},
				{Key: "model:gpt-x", Rate: 600, Per: time.Minute},
			} {
				if err := m.SetKeyLimit(ctx, l); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 4 {
				in := taskflow.CreateManagedInput{ControllerID: "agents", Goal: fmt.Sprint("g", i), OwnerSessionKey: "o",
					Concurrency: []string{"tenant:acme", "model:gpt-x"}}
				must[*taskflow.Flow](t)(m.CreateMirrored(ctx, in))
			}
			must[*taskflow.Flow](t)(m.CreateMirrored(ctx, taskflow.CreateManagedInput{ControllerID: "agents", Goal: "free",
				OwnerSessionKey: "o", Concurrency: []string{"tenant:free"}}))
			claimed := 0
			for {
				f, _, err := m.Claim(ctx, "agents", "w", time.Minute, taskflow.WithClaimWait(0))
				if err != nil {
					t.Fatal(err)
				}
				if f == nil {
					break
				}
				claimed++
			}
			if claimed != 3 {
				t.Fatalf("%d claims, want 3 (acme's 2, free's 1)", claimed)
			}
			check(`
# HELP taskflow_key_in_flight Flows carrying a concurrency key that hold a lease, for each key with a limit.
# TYPE taskflow_key_in_flight gauge
taskflow_key_in_flight{key="model:gpt-x"} 2
taskflow_key_in_flight{key="tenant:acme"} 2
# HELP taskflow_key_concurrency_limit How many flows carrying the key may hold a lease at once; only keys with a concurrency bound.
# TYPE taskflow_key_concurrency_limit gauge
taskflow_key_concurrency_limit{key="tenant:acme"} 2
# HELP taskflow_key_rate_limit_per_second How many flows carrying the key may be claimed per second; only keys with a rate bound.
# TYPE taskflow_key_rate_limit_per_second gauge
taskflow_key_rate_limit_per_second{key="model:gpt-x"} 10
# HELP taskflow_key_backlog Ready flows waiting in the fair group the key names (flows whose first key it is), for each key with a limit.
# TYPE taskflow_key_backlog gauge
taskflow_key_backlog{key="model:gpt-x"} 0
taskflow_key_backlog{key="tenant:acme"} 2
`)
			if problems, err := testutil.GatherAndLint(reg, names...); err != nil || len(problems) > 0 {
				t.Fatalf("lint: %v %v", problems, err)
			}
			if err := m.DeleteKeyLimit(ctx, "model:gpt-x"); err != nil {
				t.Fatal(err)
			}
			check(`
# HELP taskflow_key_in_flight Flows carrying a concurrency key that hold a lease, for each key with a limit.
# TYPE taskflow_key_in_flight gauge
taskflow_key_in_flight{key="tenant:acme"} 2
# HELP taskflow_key_concurrency_limit How many flows carrying the key may hold a lease at once; only keys with a concurrency bound.
# TYPE taskflow_key_concurrency_limit gauge
taskflow_key_concurrency_limit{key="tenant:acme"} 2
# HELP taskflow_key_backlog Ready flows waiting in the fair group the key names (flows whose first key it is), for each key with a limit.
# TYPE taskflow_key_backlog gauge
taskflow_key_backlog{key="tenant:acme"} 2
`)
		})
	}
}
