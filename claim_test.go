package taskflow

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

func fleetInput(controller string) CreateManagedInput {
	return CreateManagedInput{ControllerID: controller, Goal: "g", OwnerSessionKey: "agent:fleet:session:1"}
}

func TestClaimLeaseAndFencing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		defer e.m.Close()
		f := must(t, try(e.m.CreateManaged(ctx, fleetInput("ctl/a"))))
		if got, l, err := e.m.Claim(ctx, "ctl/a", "w1", time.Minute, WithClaimWait(0)); got != nil || l != nil || err != nil {
			t.Fatalf("a created flow is not runnable: %v %v %v", got, l, err)
		}
		must(t, try(e.m.StartRunning(ctx, f.ID)))
		got, l1, err := e.m.Claim(ctx, "ctl/a", "w1", time.Minute)
		if err != nil || got == nil || got.ID != f.ID || l1.WorkerID != "w1" || l1.FlowID != f.ID {
			t.Fatalf("claim: %v %+v %v", got, l1, err)
		}
		if again, _, err := e.m.Claim(ctx, "ctl/a", "w2", time.Minute, WithClaimWait(0)); again != nil || err != nil {
			t.Fatalf("claimed twice: %v %v", again, err)
		}
		if lo := must(t, try(e.m.LeaseOf(ctx, f.ID))); lo == nil || lo.Token != l1.Token || lo.WorkerID != "w1" {
			t.Fatalf("LeaseOf %+v", lo)
		}
		must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"step": 1}, "s1", WithLease(l1))))
		must(t, try(e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "r1", Status: StepRunning}, WithLease(l1))))
		ev := must(t, try(e.m.ListEvents(ctx, f.ID, 1)))[0]
		if !eventHasLease(ev, l1.Token) {
			t.Fatalf("event without the lease: %+v", ev)
		}
		l1b := must(t, try(e.m.Extend(ctx, l1, 2*time.Minute)))
		if !l1b.ExpiresAt.After(l1.ExpiresAt) {
			t.Fatalf("extend did not move the expiry: %v -> %v", l1.ExpiresAt, l1b.ExpiresAt)
		}
		// Release: another worker takes over; the old lease is fenced off.
		must(t, try(0, e.m.Release(ctx, l1)))
		_, l2, err := e.m.Claim(ctx, "ctl/a", "w2", time.Minute)
		if err != nil || l2 == nil || l2.Token == l1.Token {
			t.Fatalf("second claim: %+v %v", l2, err)
		}
		before := e.dump()
		_, err = e.m.UpdateState(ctx, f.ID, map[string]int{"stale": 1}, "", WithLease(l1))
		wantErr(t, err, ErrLeaseLost)
		_, err = e.m.Finish(ctx, f.ID, nil, WithLease(l1))
		wantErr(t, err, ErrLeaseLost)
		_, err = e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "late", Status: StepRunning}, WithLease(l1))
		wantErr(t, err, ErrLeaseLost)
		_, err = e.m.Extend(ctx, l1, time.Minute)
		wantErr(t, err, ErrLeaseLost)
		wantErr(t, e.m.Release(ctx, l1), ErrLeaseLost)
		if after := e.dump(); !reflect.DeepEqual(before, after) {
			t.Fatal("a fenced-off mutation changed Redis")
		}
		// Mutations without a lease keep working (operators, the tool).
		must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"operator": 1}, "")))
		// A terminal transition drops the lease.
		must(t, try(e.m.Finish(ctx, f.ID, nil, WithLease(l2))))
		if lo := must(t, try(e.m.LeaseOf(ctx, f.ID))); lo != nil {
			t.Fatalf("lease survived finish: %+v", lo)
		}
		requireVerifyClean(t, e.m)
	})
}

func eventHasLease(ev *FlowEvent, token string) bool { return ev.Lease == token }

func TestLeaseExpiresAndTickRequeues(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		defer e.m.Close()
		f := must(t, try(e.m.CreateMirrored(ctx, fleetInput("ctl/b"))))
		_, l1, err := e.m.Claim(ctx, "ctl/b", "w1", time.Second)
		if err != nil || l1 == nil {
			t.Fatalf("claim %v", err)
		}
		e.clock.Advance(2 * time.Second)
		// Expired: fenced even before a tick collects it.
		_, err = e.m.UpdateState(ctx, f.ID, map[string]int{"late": 1}, "", WithLease(l1))
		wantErr(t, err, ErrLeaseLost)
		if _, l, _ := e.m.Claim(ctx, "ctl/b", "w2", time.Second, WithClaimWait(0)); l != nil {
			t.Fatal("claimed before the tick returned the flow")
		}
		rep := e.engine().Tick(ctx)
		if rep.LeasesExpired != 1 || rep.Errors != 0 {
			t.Fatalf("tick %+v", rep)
		}
		got, l2, err := e.m.Claim(ctx, "ctl/b", "w2", time.Second, WithClaimWait(0))
		if err != nil || got == nil || l2.WorkerID != "w2" {
			t.Fatalf("reclaim: %v %v", l2, err)
		}
		kinds := eventKinds(t, e, f.ID)
		if kinds[0] != "claimed" || kinds[1] != "lease_expired" || kinds[2] != "claimed" {
			t.Fatalf("events %v", kinds)
		}
		requireVerifyClean(t, e.m)
	})
}

func TestWaitDropsLeaseAndResumeRequeues(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		defer e.m.Close()
		f := must(t, try(e.m.CreateMirrored(ctx, fleetInput("ctl/c"))))
		_, l, _ := e.m.Claim(ctx, "ctl/c", "w1", time.Minute)
		must(t, try(e.m.SetWaiting(ctx, f.ID, WaitTimer(e.clock.Now().Add(time.Minute)), WithLease(l))))
		if lo := must(t, try(e.m.LeaseOf(ctx, f.ID))); lo != nil {
			t.Fatal("waiting flow keeps its lease")
		}
		if got, _, _ := e.m.Claim(ctx, "ctl/c", "w2", time.Minute, WithClaimWait(0)); got != nil {
			t.Fatal("claimed a waiting flow")
		}
		rep := e.engine().TickAt(ctx, e.clock.Now().Add(2*time.Minute))
		if rep.Resumed != 1 {
			t.Fatalf("tick %+v", rep)
		}
		got, _, err := e.m.Claim(ctx, "ctl/c", "w2", time.Minute, WithClaimWait(0))
		if err != nil || got == nil || got.ID != f.ID {
			t.Fatalf("resumed flow not claimable: %v %v", got, err)
		}
		// Other controllers' workers never see it.
		g := must(t, try(e.m.CreateMirrored(ctx, fleetInput("ctl/other"))))
		if got, _, _ := e.m.Claim(ctx, "ctl/c", "w3", time.Minute, WithClaimWait(0)); got != nil {
			t.Fatalf("claimed another controller's flow %s", g.ID)
		}
		requireVerifyClean(t, e.m)
	})
}

func TestClaimBlocksUntilReady(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		defer e.m.Close()
		type res struct {
			f   *Flow
			err error
			at  time.Time
		}
		done := make(chan res, 1)
		go func() {
			f, _, err := e.m.Claim(ctx, "ctl/d", "w1", time.Minute, WithClaimWait(10*time.Second))
			done <- res{f, err, time.Now()}
		}()
		time.Sleep(200 * time.Millisecond)
		created := time.Now()
		f := must(t, try(e.m.CreateMirrored(ctx, fleetInput("ctl/d"))))
		select {
		case r := <-done:
			if r.err != nil || r.f == nil || r.f.ID != f.ID {
				t.Fatalf("claim: %v %v", r.f, r.err)
			}
			if d := r.at.Sub(created); d > 2*time.Second {
				t.Fatalf("woke %v after the flow became ready", d)
			}
		case <-time.After(8 * time.Second):
			t.Fatal("Claim was not woken by a ready flow")
		}
		// With nothing ready, Claim returns empty-handed after its wait.
		start := time.Now()
		f2, l2, err := e.m.Claim(ctx, "ctl/d", "w1", time.Minute, WithClaimWait(200*time.Millisecond))
		if f2 != nil || l2 != nil || err != nil || time.Since(start) < 150*time.Millisecond {
			t.Fatalf("empty claim: %v %v %v after %v", f2, l2, err, time.Since(start))
		}
	})
}

// TestIdleFleetSendsNothing: 16 workers blocked in Claim send no command.
func TestIdleFleetSendsNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		counters := make([]*commandCounter, 16)
		var wg sync.WaitGroup
		for i := range counters {
			c := e.b.client(t)
			counters[i] = &commandCounter{}
			c.AddHook(counters[i])
			m := NewManager(e.reopenStore(c))
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				defer m.Close()
				for ctx.Err() == nil {
					_, _, _ = m.Claim(ctx, "ctl/idle", fmt.Sprintf("w%d", i), time.Minute, WithClaimWait(time.Minute))
				}
			}(i)
		}
		sum := func() int {
			n := 0
			for _, c := range counters {
				n += c.count()
			}
			return n
		}
		// Wait until every worker has subscribed, looked, and settled.
		for settle := time.Now(); time.Since(settle) < 20*time.Second; {
			for _, c := range counters {
				c.reset()
			}
			time.Sleep(300 * time.Millisecond)
			if sum() == 0 {
				break
			}
		}
		time.Sleep(2 * time.Second)
		total := sum()
		if total != 0 {
			t.Fatalf("an idle fleet sent %d commands in 2s", total)
		}
		cancel()
		wg.Wait()
	})
}

// The fleet child: claims flows and holds their leases until killed.
func TestFleetChildHelper(t *testing.T) {
	addr, prefix := os.Getenv("TASKFLOW_FLEET_ADDR"), os.Getenv("TASKFLOW_FLEET_PREFIX")
	if addr == "" {
		t.Skip("only runs as the fleet test's child process")
	}
	var c redis.UniversalClient = redis.NewClient(&redis.Options{Addr: addr})
	if os.Getenv("TASKFLOW_FLEET_CLUSTER") == "1" {
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: clusterAddrs()})
	}
	s, err := NewRedisStore(c, WithPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(s)
	out := bufio.NewWriter(os.Stdout)
	held := 0
	for held < 100 {
		f, l, err := m.Claim(context.Background(), "ctl/crash", "doomed", 2*time.Second, WithClaimWait(5*time.Second))
		if err != nil || f == nil {
			continue
		}
		// Do half a step under the lease, then stall forever.
		if _, err := m.UpdateState(context.Background(), f.ID, map[string]string{"doomed": "was here"}, "", WithLease(l)); err == nil {
			held++
		}
	}
	fmt.Fprintln(out, "HELD 100")
	out.Flush()
	select {}
}

// TestFleetCrashRecovery: a worker process holding 100 leases is killed
// with SIGKILL; the other workers drive all 100 flows to completion, and
// the audit log shows that no two lease holders ever interleave on a flow.
func TestFleetCrashRecovery(t *testing.T) {
	if os.Getenv("TASKFLOW_FLEET_ADDR") != "" {
		t.Skip("in the child")
	}
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b, WithClock(time.Now))
			defer e.m.Close()
			ids := map[uuid.UUID]bool{}
			for i := 0; i < 100; i++ {
				f := must(t, try(e.m.CreateMirrored(e.ctx, fleetInput("ctl/crash"))))
				ids[f.ID] = true
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestFleetChildHelper$", "-test.count=1")
			cmd.Env = append(os.Environ(), "TASKFLOW_FLEET_PREFIX="+e.prefix, "TASKFLOW_FLEET_ADDR="+backendAddr(t, e))
			if b.name == "cluster" {
				cmd.Env = append(cmd.Env, "TASKFLOW_FLEET_CLUSTER=1")
			}
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			held := make(chan bool, 1)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					if sc.Text() == "HELD 100" {
						held <- true
					}
				}
			}()
			select {
			case <-held:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatal("the child never held 100 leases")
			}
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()

			// The survivors: three workers and an engine.
			ctx, cancel := context.WithTimeout(e.ctx, 60*time.Second)
			defer cancel()
			eng := NewWaitEngine(e.m, WithLogger(quietLogger()))
			go func() { _ = eng.Run(ctx, 100*time.Millisecond) }()
			var done sync.Map
			var wg sync.WaitGroup
			for w := 0; w < 3; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					m := NewManager(e.reopenStore(e.b.client(t)))
					defer m.Close()
					for ctx.Err() == nil {
						n := 0
						done.Range(func(_, _ any) bool { n++; return true })
						if n == 100 {
							return
						}
						f, l, err := m.Claim(ctx, "ctl/crash", fmt.Sprintf("survivor-%d", w), 5*time.Second, WithClaimWait(300*time.Millisecond))
						if err != nil || f == nil {
							continue
						}
						for step := 0; step < 3; step++ {
							if _, err := m.UpdateState(ctx, f.ID, map[string]int{"step": step}, "", WithLease(l)); err != nil {
								break
							}
						}
						if _, err := m.Finish(ctx, f.ID, map[string]string{"by": l.WorkerID}, WithLease(l)); err == nil {
							done.Store(f.ID, true)
						}
					}
				}(w)
			}
			wg.Wait()
			for id := range ids {
				f := must(t, try(e.m.Get(e.ctx, id)))
				if f.Status != StatusFinished {
					t.Fatalf("flow %s is %s", id, f.Status)
				}
				checkNoInterleaving(t, must(t, try(e.m.ListEvents(e.ctx, id, 1000))))
			}
			requireVerifyClean(t, e.m)
		})
	}
}

// checkNoInterleaving reads a flow's audit log oldest first: once a lease
// token is followed by another, it never appears again.
func checkNoInterleaving(t testing.TB, newestFirst []*FlowEvent) {
	t.Helper()
	retired := map[string]bool{}
	current := ""
	holders := 0
	for i := len(newestFirst) - 1; i >= 0; i-- {
		ev := newestFirst[i]
		tok := ev.Lease
		if ev.Kind == "lease_expired" {
			var p struct {
				Lease string `json:"lease"`
			}
			_ = json.Unmarshal(ev.Payload, &p)
			retired[p.Lease] = true
			if p.Lease == current {
				current = ""
			}
			continue
		}
		if tok == "" {
			continue
		}
		if retired[tok] {
			t.Fatalf("lease %s acted after it was replaced (event %s %s)", tok, ev.ID, ev.Kind)
		}
		if tok != current {
			if current != "" {
				retired[current] = true
			}
			current = tok
			holders++
		}
	}
	if holders < 2 {
		t.Fatalf("expected the dead worker and a survivor to appear, saw %d holders", holders)
	}
}

// backendAddr returns an address a child process can reach.
func backendAddr(t testing.TB, e *env) string {
	switch c := e.client.(type) {
	case *redis.Client:
		return c.Options().Addr
	case *redis.ClusterClient:
		return "cluster" // the child reads TASKFLOW_TEST_CLUSTER_ADDRS
	}
	t.Fatal("unknown client")
	return ""
}

func TestReadyHubWakesOneWaiter(t *testing.T) {
	h := &readyHub{}
	a, b, c := h.register(), h.register(), h.register()
	closed := func(ch chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	h.wake()
	if !closed(a) || closed(b) || closed(c) {
		t.Fatal("one announcement must wake exactly the oldest waiter")
	}
	// a was woken but leaves without acting: the wake goes on to b.
	h.leave(a)
	if !closed(b) || closed(c) {
		t.Fatal("a woken leaver must pass the wake on")
	}
	// c leaves unwoken: nothing is passed on, and no waiter is left.
	h.leave(c)
	h.wake() // dropped: nobody waits
	if len(h.waiters) != 0 {
		t.Fatalf("%d waiters left", len(h.waiters))
	}
}

func TestRequeueExpiredLease(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		defer e.m.Close()
		f := must(t, try(e.m.CreateMirrored(ctx, fleetInput("ctl/rq"))))
		_, l1, err := e.m.Claim(ctx, "ctl/rq", "w1", time.Second)
		if err != nil || l1 == nil {
			t.Fatalf("claim %v", err)
		}
		// A live lease is never taken away.
		if g, err := e.m.RequeueExpiredLease(ctx, f.ID); err != nil || g != nil {
			t.Fatalf("live lease requeued: %v %v", g, err)
		}
		e.clock.Advance(2 * time.Second)
		g, err := e.m.RequeueExpiredLease(ctx, f.ID)
		if err != nil || g == nil || g.Status != StatusRunning {
			t.Fatalf("expired lease not requeued: %v %v", g, err)
		}
		if l, err := e.m.LeaseOf(ctx, f.ID); err != nil || l != nil {
			t.Fatalf("lease still there: %v %v", l, err)
		}
		got, l2, err := e.m.Claim(ctx, "ctl/rq", "w2", time.Second, WithClaimWait(0))
		if err != nil || got == nil || got.ID != f.ID || l2.WorkerID != "w2" {
			t.Fatalf("reclaim: %v %v", got, err)
		}
		kinds := eventKinds(t, e, f.ID)
		if kinds[0] != "claimed" || kinds[1] != "lease_expired" {
			t.Fatalf("events %v", kinds)
		}
		// The tick finds nothing left to do.
		if rep := e.engine().Tick(ctx); rep.LeasesExpired != 0 || rep.Errors != 0 {
			t.Fatalf("tick %+v", rep)
		}
		requireVerifyClean(t, e.m)
	})
}

// TestBusyClaimsScanRarely: with a backlog, a claim is one script: the
// ids announced ready, and those a scan read beyond the one it claimed,
// serve the next claims, so the queues' heads are read about once per
// 8 flows per shard, not once per claim. Every flow is claimed once.
func TestBusyClaimsScanRarely(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		cmds := &commandCounter{}
		c := e.b.client(t)
		c.AddHook(cmds)
		m := NewManager(e.reopenStore(c))
		defer m.Close()
		// Subscribe first (an empty claim), so the flows made next are
		// announced to this Manager.
		if f, _, err := m.Claim(ctx, "ctl/busy", "w", time.Minute, WithClaimWait(0)); f != nil || err != nil {
			t.Fatalf("empty claim: %v %v", f, err)
		}
		const n = 300 // more than the candidates a Manager keeps
		made := map[uuid.UUID]bool{}
		for i := 0; i < n; i++ {
			made[must(t, try(e.m.CreateMirrored(ctx, fleetInput("ctl/busy")))).ID] = true
		}
		cmds.reset()
		seen := map[uuid.UUID]bool{}
		for i := 0; i < n; i++ {
			f, l, err := m.Claim(ctx, "ctl/busy", "w", time.Minute, WithClaimWait(5*time.Second))
			if err != nil || f == nil {
				t.Fatalf("claim %d: %v %v", i, f, err)
			}
			if seen[f.ID] || !made[f.ID] {
				t.Fatalf("claim %d: flow %s claimed twice or unknown", i, f.ID)
			}
			seen[f.ID] = true
			must(t, try(m.Finish(ctx, f.ID, nil, WithLease(l))))
		}
		if f, _, err := m.Claim(ctx, "ctl/busy", "w", time.Minute, WithClaimWait(0)); f != nil || err != nil {
			t.Fatalf("a claim after the backlog: %v %v", f, err)
		}
		cmds.mu.Lock()
		zrange := 0
		for _, name := range cmds.names {
			if name == "zrange" {
				zrange++
			}
		}
		cmds.mu.Unlock()
		// The announcements kept serve 128 claims; the other 172 and the
		// last, empty claim need a scan per 8 flows of a shard at most.
		if max := (n/8 + 4) * m.store.keys.shards; zrange > max {
			t.Fatalf("%d ZRANGE for %d claims, want at most %d", zrange, n, max)
		}
		t.Logf("%d claims, %d ZRANGE (%.1f per claim)", n, zrange, float64(zrange)/n)
	})
}
