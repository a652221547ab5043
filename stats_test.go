package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/fsck"
)

// statsSpace builds a known flow space at the env's clock (T):
//
//	controller a: 2 created; 4 started, 2 of them claimed (leases of 10 s
//	  and 60 s), so 2 ready
//	controller b: 1 started (ready); 2 waiting on timers at T+10 s and
//	  T+20 s; 1 waiting on an external event
//	controller c: 1 finished, 1 failed, 1 cancelled (all ran: its ready
//	  queue existed and is empty)
//	bridge: 3 requests published, 1 of them read by a consumer of the
//	  engines' group and not acknowledged
func statsSpace(t *testing.T, e *env) {
	t.Helper()
	ctx := e.ctx
	in := func(ctl string) CreateManagedInput {
		return CreateManagedInput{ControllerID: ctl, Goal: "g", OwnerSessionKey: "owner"}
	}
	for range 2 {
		must(t, try(e.m.CreateManaged(ctx, in("a"))))
	}
	for range 4 {
		must(t, try(e.m.CreateMirrored(ctx, in("a"))))
	}
	for _, d := range []time.Duration{10 * time.Second, time.Minute} {
		f, _ := must2(t)(e.m.Claim(ctx, "a", "w", d, WithClaimWait(0)))
		if f == nil {
			t.Fatal("nothing to claim")
		}
	}
	must(t, try(e.m.CreateMirrored(ctx, in("b"))))
	now := e.clock.Now()
	for _, w := range []any{
		WaitTimer(now.Add(10 * time.Second)), WaitTimer(now.Add(20 * time.Second)),
		WaitExternalEvent("mail", "m-1"),
	} {
		f := must(t, try(e.m.CreateMirrored(ctx, in("b"))))
		must(t, try(e.m.SetWaiting(ctx, f.ID, w)))
	}
	f := must(t, try(e.m.CreateMirrored(ctx, in("c"))))
	must(t, try(e.m.Finish(ctx, f.ID, nil)))
	f = must(t, try(e.m.CreateMirrored(ctx, in("c"))))
	must(t, try(e.m.Fail(ctx, f.ID, "boom")))
	f = must(t, try(e.m.CreateMirrored(ctx, in("c"))))
	must(t, try(e.m.Cancel(ctx, f.ID)))
	for i := range 3 {
		if err := e.m.PublishResume(ctx, ResumeRequest{Topic: "t", CorrelationID: string(rune('x' + i))}); err != nil {
			t.Fatal(err)
		}
	}
	stream := e.store.keys.bridge()
	if err := e.client.XGroupCreateMkStream(ctx, stream, bridgeGroup, "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.client.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: bridgeGroup, Consumer: "stalled", Streams: []string{stream, ">"}, Count: 1,
	}).Err(); err != nil {
		t.Fatal(err)
	}
}

// must2 is must for calls with three results.
func must2(t testing.TB) func(*Flow, *Lease, error) (*Flow, *Lease) {
	return func(f *Flow, l *Lease, err error) (*Flow, *Lease) {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return f, l
	}
}

func TestStats(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		empty := must(t, try(e.m.Stats(e.ctx)))
		if empty.Total != 0 || len(empty.Ready) != 0 || empty.Timers != (TimerStats{}) ||
			empty.Leases != (LeaseStats{}) || empty.Bridge != (BridgeQueueStats{}) || len(empty.Flows) != len(Statuses()) {
			t.Fatalf("empty flow space: %+v", empty)
		}

		statsSpace(t, e)
		e.clock.Advance(25 * time.Second)
		st := must(t, try(e.m.Stats(e.ctx)))
		want := &Stats{
			At: e.clock.Now(), Shards: DefaultShards, Total: 13, StaleAfter: time.Minute,
			Flows: map[FlowStatus]int64{
				StatusCreated: 2, StatusRunning: 5, StatusWaiting: 3,
				StatusFinished: 1, StatusFailed: 1, StatusCancelled: 1,
			},
			Ready: []ReadyQueueStats{
				{Controller: "a", Depth: 2, OldestAge: 25 * time.Second},
				{Controller: "b", Depth: 1, OldestAge: 25 * time.Second},
				{Controller: "c", Depth: 0},
			},
			Timers: TimerStats{Pending: 2, Due: 2, Lag: 15 * time.Second},
			Leases: LeaseStats{Held: 2, Expired: 1, ExpiredLag: 15 * time.Second},
			Bridge: BridgeQueueStats{Length: 3, Pending: 1, Backlog: 2},
		}
		if !reflect.DeepEqual(st, want) {
			t.Fatalf("stats:\n got %+v\nwant %+v", st, want)
		}

		// A tick resumes both timers and collects the expired lease:
		// the figures follow.
		rep := e.engine().Tick(e.ctx)
		if rep.Resumed != 2 || rep.LeasesExpired != 1 || rep.Err != nil {
			t.Fatalf("tick: %+v", rep)
		}
		st = must(t, try(e.m.Stats(e.ctx)))
		want.Flows[StatusRunning], want.Flows[StatusWaiting] = 7, 1
		want.Ready[0].Depth = 3 // the expired lease's flow is back
		want.Ready[1].Depth = 3 // the resumed timers
		want.Timers = TimerStats{}
		want.Leases = LeaseStats{Held: 1}
		if !reflect.DeepEqual(st, want) {
			t.Fatalf("stats after the tick:\n got %+v\nwant %+v", st, want)
		}

		// The JSON form names every figure; the text form prints them.
		raw, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{`"running":7`, `"lag_ns":0`, `"early_events":0`, `"controller":"a"`, `"pending":1`,
			`"stale":0`, `"ready_stale":0`, `"stale_after_ns":60000000000`} {
			if !strings.Contains(string(raw), k) {
				t.Errorf("JSON %s lacks %s", raw, k)
			}
		}
		if txt := st.String(); !strings.Contains(txt, "flows 13") || !strings.Contains(txt, "ready a: 3") {
			t.Errorf("text:\n%s", txt)
		}
	})
}

// TestStatsStaleReady: a ready flow counts as stale once it has waited
// on its queue longer than a minute; a claim takes it out of the count,
// and a release puts it back with its wait started again.
func TestStatsStaleReady(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		in := func(ctl string) CreateManagedInput {
			return CreateManagedInput{ControllerID: ctl, Goal: "g", OwnerSessionKey: "owner"}
		}
		for range 3 {
			must(t, try(e.m.CreateMirrored(e.ctx, in("s"))))
		}
		must(t, try(e.m.CreateMirrored(e.ctx, in("t"))))
		check := func(when string, wantTotal int64, want ...ReadyQueueStats) {
			t.Helper()
			st := must(t, try(e.m.Stats(e.ctx)))
			got := make([]ReadyQueueStats, len(st.Ready))
			for i, q := range st.Ready {
				got[i] = ReadyQueueStats{Controller: q.Controller, Depth: q.Depth, Stale: q.Stale}
			}
			if !reflect.DeepEqual(got, want) || st.ReadyStale != wantTotal || st.StaleAfter != time.Minute {
				t.Fatalf("%s: ready %+v, stale %d after %s; want %+v, stale %d after 1m",
					when, got, st.ReadyStale, st.StaleAfter, want, wantTotal)
			}
		}

		e.clock.Advance(30 * time.Second)
		check("after 30 s", 0, ReadyQueueStats{Controller: "s", Depth: 3}, ReadyQueueStats{Controller: "t", Depth: 1})
		must(t, try(e.m.CreateMirrored(e.ctx, in("s")))) // queued at 30 s
		e.clock.Advance(30 * time.Second)
		check("after exactly a minute", 0, ReadyQueueStats{Controller: "s", Depth: 4}, ReadyQueueStats{Controller: "t", Depth: 1})
		e.clock.Advance(time.Second)
		check("after 61 s", 4, ReadyQueueStats{Controller: "s", Depth: 4, Stale: 3}, ReadyQueueStats{Controller: "t", Depth: 1, Stale: 1})

		f, l := must2(t)(e.m.Claim(e.ctx, "t", "w", time.Minute, WithClaimWait(0)))
		if f == nil {
			t.Fatal("nothing to claim")
		}
		check("after the claim", 3, ReadyQueueStats{Controller: "s", Depth: 4, Stale: 3}, ReadyQueueStats{Controller: "t"})
		if err := e.m.Release(e.ctx, l); err != nil {
			t.Fatal(err)
		}
		check("after the release", 3, ReadyQueueStats{Controller: "s", Depth: 4, Stale: 3}, ReadyQueueStats{Controller: "t", Depth: 1})
		e.clock.Advance(61 * time.Second)
		check("after 122 s", 5, ReadyQueueStats{Controller: "s", Depth: 4, Stale: 4}, ReadyQueueStats{Controller: "t", Depth: 1, Stale: 1})
	})
}

// TestStatsRoundTrips checks that Stats costs the same number of round
// trips whatever the number of flows: two pipelines (after the layout
// check of a store's first call): the flow space's indexes, then the
// ready queues it names.
func TestStatsRoundTrips(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		counter := &pipeCounter{}
		c, ok := e.b.client(t).(*redis.Client)
		if !ok {
			t.Skip("a cluster pipeline is one round trip per node")
		}
		c.AddHook(counter)
		s := e.reopenStore(c)
		must(t, try(e.m.CreateMirrored(e.ctx, CreateManagedInput{ControllerID: "a", Goal: "g", OwnerSessionKey: "o"})))
		must(t, try(s.stats(e.ctx))) // the layout check, once the first create recorded it
		for _, n := range []int{1, 50} {
			for range n {
				must(t, try(e.m.CreateMirrored(e.ctx, CreateManagedInput{ControllerID: "a", Goal: "g", OwnerSessionKey: "o"})))
			}
			counter.n = 0
			must(t, try(s.stats(e.ctx)))
			if counter.n != 2 {
				t.Fatalf("with %d more flows Stats made %d round trips, want 2", n, counter.n)
			}
		}
	})
}

// pipeCounter counts round trips: one per command sent alone, one per
// pipeline.
type pipeCounter struct{ n int }

func (c *pipeCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *pipeCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name != "hello" && name != "client" {
			c.n++
		}
		return next(ctx, cmd)
	}
}
func (c *pipeCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n++
		return next(ctx, cmds)
	}
}

// TestStatsUnlistedController: a ready queue written before the
// controllers set existed is invisible to Stats until Verify repairs it.
func TestStatsUnlistedController(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := must(t, try(e.m.CreateMirrored(e.ctx, CreateManagedInput{ControllerID: "old", Goal: "g", OwnerSessionKey: "o"})))
		shard := e.store.keys.shardOf(f.ID)
		if err := e.client.Del(e.ctx, e.store.keys.controllers(shard)).Err(); err != nil {
			t.Fatal(err)
		}
		if st := must(t, try(e.m.Stats(e.ctx))); len(st.Ready) != 0 {
			t.Fatalf("ready %+v", st.Ready)
		}
		rep := must(t, try(e.m.Verify(e.ctx)))
		if len(rep.Problems) != 1 || rep.Problems[0].Kind != "controller_unlisted" || rep.Problems[0].Member != "old" {
			t.Fatalf("verify: %+v", rep.Problems)
		}
		rep = must(t, try(e.m.Verify(e.ctx, fsck.WithRepair())))
		if rep.Unrepaired() != 0 {
			t.Fatalf("repair: %+v", rep.Problems)
		}
		if st := must(t, try(e.m.Stats(e.ctx))); len(st.Ready) != 1 || st.Ready[0].Depth != 1 {
			t.Fatalf("ready after repair %+v", st.Ready)
		}
		if rep := must(t, try(e.m.Verify(e.ctx))); !rep.OK() {
			t.Fatalf("verify after repair: %+v", rep.Problems)
		}
	})
}

// TestStatsKeys: Stats lists every key with a limit, with its limit, its
// flows in flight and its backlog, as KeyLimits does; a key without a
// limit is not listed, and a deleted limit leaves the list.
func TestStatsKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		if st := must(t, try(e.m.Stats(ctx))); st.Keys != nil {
			t.Fatalf("no limits: keys %+v", st.Keys)
		}
		for _, l := range []KeyLimit{
			{Key: "tenant:acme", Concurrency: 2, Weight: 3},
			{Key: "model:gpt-x", Rate: 50, Per: time.Minute, Burst: 10},
		} {
			if err := e.m.SetKeyLimit(ctx, l); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 4 {
			must(t, try(e.m.CreateMirrored(ctx, gatedInput(fmt.Sprint("acme ", i), 0, "tenant:acme", "model:gpt-x"))))
			e.clock.Advance(time.Millisecond)
		}
		must(t, try(e.m.CreateMirrored(ctx, gatedInput("free", 0, "tenant:free")))) // no limit: not listed
		for range 2 {
			if f, _ := claimNow(t, e, "w"); f == nil {
				t.Fatal("nothing to claim")
			}
		}
		st := must(t, try(e.m.Stats(ctx)))
		want := []KeyUsage{
			{KeyLimit: KeyLimit{Key: "model:gpt-x", Rate: 50, Per: time.Minute, Burst: 10, Weight: 1}, InFlight: 2},
			{KeyLimit: KeyLimit{Key: "tenant:acme", Concurrency: 2, Per: time.Second, Weight: 3}, InFlight: 2},
		}
		// Which of acme's and free's groups the two claims took depends
		// on the fair order: the backlog of acme's group is what is left.
		byKey := map[string]int{}
		for _, k := range st.Keys {
			byKey[k.Key] = k.InFlight
		}
		want[1].Backlog = 4 - byKey["tenant:acme"]
		want[0].InFlight, want[1].InFlight = byKey["tenant:acme"], byKey["tenant:acme"]
		if !reflect.DeepEqual(st.Keys, want) {
			t.Fatalf("keys:\n got %+v\nwant %+v", st.Keys, want)
		}
		lim := must(t, try(e.m.KeyLimits(ctx)))
		if !reflect.DeepEqual(lim, st.Keys) {
			t.Fatalf("KeyLimits %+v, Stats.Keys %+v", lim, st.Keys)
		}
		// Claims until acme's limit of 2 holds: both slots are taken
		// and two of its flows wait.
		for range 3 {
			claimNow(t, e, "w")
		}
		st = must(t, try(e.m.Stats(ctx)))
		if len(st.Keys) != 2 || st.Keys[1].InFlight != 2 || st.Keys[1].Backlog != 2 || st.Keys[0].InFlight != 2 {
			t.Fatalf("at acme's limit: %+v", st.Keys)
		}
		// The two waiting on the lane are the controller's ready flows,
		// stale once they have waited a minute.
		if len(st.Ready) != 1 || st.Ready[0].Controller != "ctl/gate" || st.Ready[0].Depth != 2 || st.Ready[0].Stale != 0 {
			t.Fatalf("ready at acme's limit: %+v", st.Ready)
		}
		e.clock.Advance(2 * time.Minute)
		if st := must(t, try(e.m.Stats(ctx))); len(st.Ready) != 1 || st.Ready[0].Depth != 2 || st.Ready[0].Stale != 2 || st.ReadyStale != 2 {
			t.Fatalf("ready two minutes on: %+v", st.Ready)
		}
		raw, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{`"keys":[{"key":"model:gpt-x","rate":50,"per":60000000000,"burst":10,"weight":1,"in_flight":2,"backlog":0}`,
			`{"key":"tenant:acme","concurrency":2,"per":1000000000,"weight":3,"in_flight":2,"backlog":2}`} {
			if !strings.Contains(string(raw), k) {
				t.Errorf("JSON %s lacks %s", raw, k)
			}
		}
		if txt := st.String(); !strings.Contains(txt, "key tenant:acme: 2 in flight, 2 backlog (concurrency 2,") {
			t.Errorf("text:\n%s", txt)
		}

		if err := e.m.DeleteKeyLimit(ctx, "model:gpt-x"); err != nil {
			t.Fatal(err)
		}
		st = must(t, try(e.m.Stats(ctx)))
		if len(st.Keys) != 1 || st.Keys[0].Key != "tenant:acme" {
			t.Fatalf("after a delete: %+v", st.Keys)
		}
		if err := e.m.DeleteKeyLimit(ctx, "tenant:acme"); err != nil {
			t.Fatal(err)
		}
		if st := must(t, try(e.m.Stats(ctx))); st.Keys != nil {
			t.Fatalf("after deleting every limit: %+v", st.Keys)
		}
	})
}

// TestStatsKeysBound: Stats lists all of the most keys that may have a
// limit (1,000), and no more can be configured.
func TestStatsKeysBound(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		for i := range maxLimits {
			if err := e.m.SetKeyLimit(e.ctx, KeyLimit{Key: fmt.Sprintf("k%04d", i), Concurrency: i + 1}); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.m.SetKeyLimit(e.ctx, KeyLimit{Key: "one-more", Concurrency: 1}); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("limit %d: %v, want ErrInvalidData", maxLimits+1, err)
		}
		st := must(t, try(e.m.Stats(e.ctx)))
		if len(st.Keys) != maxLimits || st.Keys[0].Key != "k0000" || st.Keys[maxLimits-1].Concurrency != maxLimits {
			t.Fatalf("%d keys listed, want %d", len(st.Keys), maxLimits)
		}
	})
}
