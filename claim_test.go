package taskflow

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"reflect"
	"sort"
	"strconv"
	"strings"
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

// idleFleet is workers blocked in Claim, each with its own client, store
// and manager, and the commands their clients send.
type idleFleet struct {
	counters []*commandCounter
	wg       sync.WaitGroup
}

// startIdleFleet starts n workers looping in Claim(controller, wait 1
// min) until ctx ends, and waits until they have subscribed, looked and
// settled (no command for 300 ms; at most 20 s). Wait for them with
// f.wg once ctx is cancelled.
func startIdleFleet(ctx context.Context, t *testing.T, e *env, n int, controller string) *idleFleet {
	f := &idleFleet{counters: make([]*commandCounter, n)}
	for i := range f.counters {
		c := e.b.client(t)
		f.counters[i] = &commandCounter{}
		c.AddHook(f.counters[i])
		m := NewManager(e.reopenStore(c))
		f.wg.Add(1)
		go func(i int) {
			defer f.wg.Done()
			defer m.Close()
			for ctx.Err() == nil {
				_, _, _ = m.Claim(ctx, controller, fmt.Sprintf("w%d", i), time.Minute, WithClaimWait(time.Minute))
			}
		}(i)
	}
	for settle := time.Now(); time.Since(settle) < 20*time.Second; {
		f.reset()
		time.Sleep(300 * time.Millisecond)
		if f.sent() == 0 {
			break
		}
	}
	return f
}

// sent is how many commands the fleet sent since the last reset.
func (f *idleFleet) sent() int {
	n := 0
	for _, c := range f.counters {
		n += c.count()
	}
	return n
}

func (f *idleFleet) reset() {
	for _, c := range f.counters {
		c.reset()
	}
}

// TestIdleFleetSendsNothing: 16 workers blocked in Claim send no command.
func TestIdleFleetSendsNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		fleet := startIdleFleet(ctx, t, e, 16, "ctl/idle")
		time.Sleep(2 * time.Second)
		total := fleet.sent()
		if total != 0 {
			t.Fatalf("an idle fleet sent %d commands in 2s", total)
		}
		cancel()
		fleet.wg.Wait()
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

// TestBusyClaimIsOneScript: with a backlog, a claim is one script that
// takes a queue's head; the queues' lengths are read when the Manager
// starts claiming and when a claim finds nothing, not per claim. Every
// flow is claimed once.
func TestBusyClaimIsOneScript(t *testing.T) {
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
		const n = 300
		made := map[uuid.UUID]bool{}
		for i := 0; i < n; i++ {
			made[must(t, try(e.m.CreateMirrored(ctx, fleetInput("ctl/busy")))).ID] = true
		}
		cmds.reset()
		seen := map[uuid.UUID]bool{}
		for i := 0; i < n; i++ {
			f, _, err := m.Claim(ctx, "ctl/busy", "w", time.Minute, WithClaimWait(5*time.Second))
			if err != nil || f == nil {
				t.Fatalf("claim %d: %v %v", i, f, err)
			}
			if seen[f.ID] || !made[f.ID] {
				t.Fatalf("claim %d: flow %s claimed twice or unknown", i, f.ID)
			}
			seen[f.ID] = true
		}
		claims := cmds.count()
		if f, _, err := m.Claim(ctx, "ctl/busy", "w", time.Minute, WithClaimWait(0)); f != nil || err != nil {
			t.Fatalf("a claim after the backlog: %v %v", f, err)
		}
		// Announcements counted per shard, and each reply's count of
		// flows left, steer every claim to a shard with work: one script
		// per claim (go-redis may add a SCRIPT LOAD or FUNCTION LOAD).
		if claims > n+2 {
			t.Fatalf("%d commands for %d claims, want one script each", claims, n)
		}
		cmds.mu.Lock()
		scans := 0
		for _, name := range cmds.names {
			if name == "zrange" {
				t.Fatalf("a claim read a queue's head: %v", cmds.names)
			}
			if name == "zcard" {
				scans++
			}
		}
		cmds.mu.Unlock()
		// The last, empty claim reads the lengths once (its wait of 0
		// ended) after its empty tries of the shards it believed busy.
		if max := 2 * m.store.keys.shards; scans > max {
			t.Fatalf("%d ZCARD, want at most %d", scans, max)
		}
		t.Logf("%d claims, %d commands; the empty claim after them %d", n, claims, cmds.count()-claims)
	})
}

// TestClaimNextHandsOff: Finish WithNext leases the worker the next ready
// flow of the controller in the same shard, in the same script; an
// empty shard hands nothing; a re-sent call is handed the same flow; a
// call without a lease, or a mutation that is not a transition, refuses.
func TestClaimNextHandsOff(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		// One shard (of 16) gets several flows: ids picked so.
		var ids []uuid.UUID
		for len(ids) < 3 {
			f := must(t, try(e.m.CreateMirrored(ctx, fleetInput("ctl/next"))))
			if e.m.store.keys.shardOf(f.ID) == 5 {
				ids = append(ids, f.ID)
				continue
			}
			must(t, try(e.m.Cancel(ctx, f.ID)))
		}
		// Flows made in one millisecond are taken in id order: which one
		// comes first is not the test's business.
		left := map[uuid.UUID]bool{ids[0]: true, ids[1]: true, ids[2]: true}
		took := func(f *Flow) bool {
			if f == nil || !left[f.ID] {
				return false
			}
			delete(left, f.ID)
			return true
		}
		f, l, err := e.m.Claim(ctx, "ctl/next", "w1", time.Minute, WithClaimWait(0))
		if err != nil || !took(f) {
			t.Fatalf("claim: %v %v, want one of %v", f, err, ids)
		}
		if _, err := e.m.UpdateState(ctx, f.ID, nil, "", WithLease(l), WithNext(&f, &l, time.Minute)); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("UpdateState WithNext: %v, want ErrInvalidData", err)
		}
		var nf *Flow
		var nl *Lease
		if _, err := e.m.Finish(ctx, f.ID, nil, WithNext(&nf, &nl, time.Minute)); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("Finish WithNext without a lease: %v, want ErrInvalidData", err)
		}
		// The hand-off, re-sent with the same call id: one next flow,
		// one claimed event.
		first := f.ID
		done := must(t, try(e.m.Finish(ctx, first, nil, WithLease(l), WithCallID("hand-1"), WithNext(&f, &l, time.Minute))))
		if done.Status != StatusFinished || !took(f) || l.FlowID != f.ID || l.WorkerID != "w1" {
			t.Fatalf("hand-off: %v, next %+v %+v, want one of %v", done.Status, f, l, left)
		}
		handed := f.ID
		lo := must(t, try(e.m.LeaseOf(ctx, handed)))
		if lo == nil || lo.Token != l.Token || lo.ControllerID != "ctl/next" {
			t.Fatalf("lease held %+v, handed %+v", lo, l)
		}
		// A repeat (the caller re-sends after a lost reply, with the same
		// call id) is handed the same flow under the same lease, and
		// leases nothing more.
		var again *Flow
		var againL *Lease
		must(t, try(e.m.Finish(ctx, first, nil, WithLease(&Lease{FlowID: first, Token: "x", WorkerID: "w1"}),
			WithCallID("hand-1"), WithNext(&again, &againL, time.Minute))))
		if again == nil || again.ID != handed || againL.Token != l.Token {
			t.Fatalf("the repeat was handed %+v %+v, want %s under %s", again, againL, handed, l.Token)
		}
		claimed := 0
		for _, ev := range must(t, try(e.m.ListEvents(ctx, handed, 10))) {
			if ev.Kind == EventClaimed {
				claimed++
			}
		}
		if claimed != 1 {
			t.Fatalf("the handed flow was claimed %d times", claimed)
		}
		// Under the next lease, finish and take the last; then the shard
		// is empty.
		must(t, try(e.m.Finish(ctx, f.ID, nil, WithLease(l), WithNext(&f, &l, time.Minute))))
		if !took(f) {
			t.Fatalf("second hand-off: %v, want %v", f, left)
		}
		must(t, try(e.m.Finish(ctx, f.ID, nil, WithLease(l), WithNext(&f, &l, time.Minute))))
		if f != nil || l != nil {
			t.Fatalf("an empty shard handed %v %v", f, l)
		}
		requireVerifyClean(t, e.m)
	})
}

// TestClaimFindsAFlowWhoseAnnouncementWasLost: a ready flow the Manager
// was not told of (its announcement lost, say while the subscription
// reconnected) is found by the read of the queues' lengths at the end of
// a claim wait, and by a claim that does not wait.
func TestClaimFindsAFlowWhoseAnnouncementWasLost(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		m := NewManager(e.reopenStore(e.b.client(t)))
		defer m.Close()
		if f, _, err := m.Claim(ctx, "ctl/lost-ann", "w", time.Minute, WithClaimWait(0)); f != nil || err != nil {
			t.Fatalf("empty claim: %v %v", f, err)
		}
		m.hubMu.Lock()
		h := m.hubs["ctl/lost-ann"]
		m.hubMu.Unlock()
		// lose waits for the announcement of a flow of shard to arrive,
		// then loses it: the hub counts nothing ready.
		lose := func(shard int) {
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				h.mu.Lock()
				heard := h.ready[shard] > 0
				h.mu.Unlock()
				if heard {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the announcement never arrived")
				}
			}
			h.mu.Lock()
			for i := range h.ready {
				h.ready[i] = 0
			}
			h.mu.Unlock()
		}
		for _, wait := range []time.Duration{300 * time.Millisecond, 0} {
			made := must(t, try(e.m.CreateMirrored(ctx, fleetInput("ctl/lost-ann"))))
			lose(m.store.keys.shardOf(made.ID))
			start := time.Now()
			f, l, err := m.Claim(ctx, "ctl/lost-ann", "w", time.Minute, WithClaimWait(wait))
			if err != nil || f == nil || f.ID != made.ID {
				t.Fatalf("wait %s: claimed %v %v, want %s", wait, f, err, made.ID)
			}
			if took := time.Since(start); took < wait {
				t.Fatalf("wait %s: found after %s, before the wait ended: the count was not lost", wait, took)
			}
			must(t, try(m.Finish(ctx, f.ID, nil, WithLease(l))))
		}
	})
}

// gateFleetLimits are the limits TestGateFleetSIGKILL puts on its keys.
var gateFleetLimits = map[string]int{"k1": 1, "k3": 3, "k10": 10}

// TestGateFleetSIGKILL: 16 workers in 4 processes claim flows carrying
// keys limited to 1, 3 and 10 concurrent leases, while the test SIGKILLs
// a process at random every 250 ms (8 times) and starts another; an
// engine ticks. Every admission reports its keys' in-flight counts as
// the admitting script read them, after its own slot: none ever passes
// its key's limit, every flow finishes, and no slot outlives its lease.
func TestGateFleetSIGKILL(t *testing.T) {
	if os.Getenv("TASKFLOW_GATE_ADDR") != "" {
		t.Skip("in the child")
	}
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b, WithClock(time.Now))
			defer e.m.Close()
			ctx := e.ctx
			for k, n := range gateFleetLimits {
				if err := e.m.SetKeyLimit(ctx, KeyLimit{Key: k, Concurrency: n}); err != nil {
					t.Fatal(err)
				}
			}
			patterns := [][]string{{"k1"}, {"k3"}, {"k10"}, {"k3", "k10"}, {"k10", "k1"}, {"k10"}}
			const flows = 300
			for i := range flows {
				in := fleetInput("ctl/gatefleet")
				in.Concurrency = patterns[i%len(patterns)]
				must(t, try(e.m.CreateMirrored(ctx, in)))
			}
			var mu sync.Mutex
			var over []string
			admits := 0
			start := func() *exec.Cmd {
				cmd := exec.Command(os.Args[0], "-test.run=^TestGateFleetChildHelper$", "-test.count=1")
				cmd.Env = append(os.Environ(), "TASKFLOW_GATE_PREFIX="+e.prefix, "TASKFLOW_GATE_ADDR="+backendAddr(t, e))
				if b.name == "cluster" {
					cmd.Env = append(cmd.Env, "TASKFLOW_FLEET_CLUSTER=1")
				}
				// Not StdoutPipe: Wait would close it under unread lines of
				// a killed child. With a writer, Wait waits for the copy.
				stdout, w := io.Pipe()
				cmd.Stdout = w
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				go func() {
					_ = cmd.Wait()
					_ = w.Close()
				}()
				go func() {
					sc := bufio.NewScanner(stdout)
					for sc.Scan() {
						line, ok := strings.CutPrefix(sc.Text(), "ADMIT ")
						if !ok {
							continue
						}
						mu.Lock()
						admits++
						for _, kv := range strings.Fields(line) {
							k, v, _ := strings.Cut(kv, "=")
							if n, _ := strconv.Atoi(v); n > gateFleetLimits[k] {
								over = append(over, kv)
							}
						}
						mu.Unlock()
					}
				}()
				return cmd
			}
			procs := []*exec.Cmd{start(), start(), start(), start()}
			defer func() {
				for _, p := range procs {
					_ = p.Process.Kill()
				}
			}()
			runCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
			defer cancel()
			eng := NewWaitEngine(e.m, WithLogger(quietLogger()))
			go func() { _ = eng.Run(runCtx, 100*time.Millisecond) }()
			kills := 0
			finished := func() int {
				st := must(t, try(e.m.Stats(ctx)))
				return int(st.Flows[StatusFinished])
			}
			for finished() < flows {
				if runCtx.Err() != nil {
					t.Fatalf("after 90 s: %d of %d flows finished, %d processes killed", finished(), flows, kills)
				}
				time.Sleep(250 * time.Millisecond)
				if kills < 8 {
					i := rand.IntN(len(procs))
					_ = procs[i].Process.Signal(syscall.SIGKILL)
					procs[i] = start()
					kills++
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(over) > 0 {
				t.Fatalf("in-flight counts over their limits, as the admitting script read them: %v", over)
			}
			if admits < flows {
				t.Fatalf("%d admissions reported for %d flows", admits, flows)
			}
			// The killed processes' slots lapse with their leases (1.5 s),
			// and their last lines are read.
			mu.Unlock()
			time.Sleep(2 * time.Second)
			mu.Lock()
			for _, u := range must(t, try(e.m.KeyLimits(ctx))) {
				if u.InFlight != 0 || u.Backlog != 0 {
					t.Fatalf("key %s: %d in flight, %d queued after every flow finished", u.Key, u.InFlight, u.Backlog)
				}
			}
			t.Logf("%d flows, %d admissions, %d processes killed", flows, admits, kills)
		})
	}
}

// The gate fleet's child: 4 workers claiming and finishing flows, each
// admission's in-flight counts printed as the gate read them.
func TestGateFleetChildHelper(t *testing.T) {
	addr, prefix := os.Getenv("TASKFLOW_GATE_ADDR"), os.Getenv("TASKFLOW_GATE_PREFIX")
	if addr == "" {
		t.Skip("only runs as the gate fleet test's child process")
	}
	var c redis.UniversalClient = redis.NewClient(&redis.Options{Addr: addr})
	if os.Getenv("TASKFLOW_FLEET_CLUSTER") == "1" {
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: clusterAddrs()})
	}
	s, err := NewRedisStore(c, WithPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	s.onAdmit = func(gk string, counts []int) {
		keys, _ := parseGateField(gk)
		var b strings.Builder
		b.WriteString("ADMIT")
		for i, k := range keys {
			if i < len(counts) {
				fmt.Fprintf(&b, " %s=%d", k, counts[i])
			}
		}
		mu.Lock()
		fmt.Fprintln(out, b.String())
		_ = out.Flush()
		mu.Unlock()
	}
	m := NewManager(s)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(w)))
			for {
				f, l, err := m.Claim(context.Background(), "ctl/gatefleet", fmt.Sprint("w", w), 1500*time.Millisecond, WithClaimWait(time.Second))
				if err != nil || f == nil {
					continue
				}
				time.Sleep(time.Duration(20+rnd.IntN(40)) * time.Millisecond)
				_, _ = m.Finish(context.Background(), f.ID, nil, WithLease(l))
			}
		}()
	}
	wg.Wait()
}

// leaseFields returns every field of every shard's leases hash: a lease
// is its flow id's field and its claim memory, 't:<token>'.
func leaseFields(t testing.TB, e *env) []string {
	t.Helper()
	var out []string
	for sh := 0; sh < e.store.keys.shards; sh++ {
		out = append(out, must(t, try(e.client.HKeys(e.ctx, e.store.keys.leases(sh)).Result()))...)
	}
	sort.Strings(out)
	return out
}

// TestClaimMemoryEndsWithTheLease: what a lease token leased is kept
// beside the lease (field 't:<token>' of the shard's leases hash) for as
// long as the lease lives, and goes with it whichever way the lease
// ends: a transition under it, one made without it, a release, a wait,
// the tick's expiry, a hand-off. Nothing is left behind to grow.
func TestClaimMemoryEndsWithTheLease(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		defer e.m.Close()
		const ctl = "ctl/memory"
		for i := 0; i < 7; i++ {
			must(t, try(e.m.CreateMirrored(ctx, fleetInput(ctl))))
		}
		claim := func() (*Flow, *Lease) {
			t.Helper()
			f, l, err := e.m.Claim(ctx, ctl, "w1", time.Minute, WithClaimWait(0))
			if err != nil || f == nil {
				t.Fatalf("claim: %v %v", f, err)
			}
			return f, l
		}
		// A live lease holds two fields: the lease and its claim memory.
		f, l := claim()
		want := []string{f.ID.String(), "t:" + l.Token}
		if got := leaseFields(t, e); !reflect.DeepEqual(got, want) {
			t.Fatalf("leases %v, want %v", got, want)
		}
		if id := e.client.HGet(ctx, e.store.keys.leases(e.store.keys.shardOf(f.ID)), "t:"+l.Token).Val(); id != f.ID.String() {
			t.Fatalf("claim memory names %q, want %s", id, f.ID)
		}
		requireVerifyClean(t, e.m) // a live lease's claim memory is no problem
		must(t, try(e.m.Finish(ctx, f.ID, nil, WithLease(l))))
		// Each way a lease ends.
		f, l = claim()
		if err := e.m.Release(ctx, l); err != nil {
			t.Fatal(err)
		}
		f, _ = claim()
		must(t, try(e.m.Cancel(ctx, f.ID))) // without the lease: the script reads its token
		f, l = claim()
		must(t, try(e.m.SetWaiting(ctx, f.ID, WaitManual(), WithLease(l))))
		f, l = claim()
		var next *Flow
		var nl *Lease
		must(t, try(e.m.Finish(ctx, f.ID, nil, WithLease(l), WithNext(&next, &nl, time.Minute))))
		if next != nil {
			must(t, try(e.m.Fail(ctx, next.ID, "done", WithLease(nl))))
		}
		claim() // then its worker dies: the tick ends the lease
		e.clock.Advance(2 * time.Minute)
		if rep := e.engine().Tick(ctx); rep.LeasesExpired != 1 || rep.Errors != 0 {
			t.Fatalf("tick %+v", rep)
		}
		if got := leaseFields(t, e); len(got) != 0 {
			t.Fatalf("leases left after every lease ended: %v", got)
		}
		requireVerifyClean(t, e.m)
	})
}

// TestHandOffComesWithItsState: WithoutState trims the reply's own flow
// only; the flow WithNext hands over comes whole, state included, as
// Claim's does, and so does the one a repeat of the call is handed.
func TestHandOffComesWithItsState(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		defer e.m.Close()
		const ctl = "ctl/handstate"
		// Two flows in one shard (ids picked so): one to finish, one to hand.
		var ids []uuid.UUID
		for len(ids) < 2 {
			in := fleetInput(ctl)
			in.State = map[string]any{"job": len(ids)}
			f := must(t, try(e.m.CreateMirrored(ctx, in)))
			if e.m.store.keys.shardOf(f.ID) == 3 {
				ids = append(ids, f.ID)
				continue
			}
			must(t, try(e.m.Cancel(ctx, f.ID)))
		}
		f, l, err := e.m.Claim(ctx, ctl, "w1", time.Minute, WithClaimWait(0))
		if err != nil || f == nil || f.State == nil {
			t.Fatalf("claim: %+v %v", f, err)
		}
		first := f.ID
		done := must(t, try(e.m.Finish(ctx, first, nil, WithLease(l), WithoutState(), WithCallID("hs-1"), WithNext(&f, &l, time.Minute))))
		if done.State != nil || done.Status != StatusFinished {
			t.Fatalf("the finished flow: status %s, state %s; want finished without state", done.Status, done.State)
		}
		want := must(t, try(e.m.Get(ctx, f.ID)))
		if f == nil || f.ID == first || string(f.State) != string(want.State) || len(f.State) == 0 {
			t.Fatalf("handed %+v, want the other flow with its state %s", f, want.State)
		}
		var again *Flow
		var againL *Lease
		must(t, try(e.m.Finish(ctx, first, nil, WithLease(&Lease{FlowID: first, Token: "x", WorkerID: "w1"}),
			WithoutState(), WithCallID("hs-1"), WithNext(&again, &againL, time.Minute))))
		if again == nil || again.ID != f.ID || string(again.State) != string(want.State) {
			t.Fatalf("the repeat was handed %+v, want %s with its state", again, f.ID)
		}
	})
}
