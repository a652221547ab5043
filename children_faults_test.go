package taskflow

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

// chaosController is the controller of the chaos test's children.
const chaosController = "ctl/chaos-child"

// chaosFleet is the chaos test's fleet: workers that claim the children
// and finish or fail them, killed at random (a killed worker walks away
// from its leased flow, whose lease must expire), two engines ticking at
// once, and a clock that runs 25 times faster than the wall clock, so
// that leases, the join's deadline and the relay's grace come due.
type chaosFleet struct {
	t        *testing.T
	e        *env
	managers []*Manager
	// dying ends flows as a process that dies right after the end's
	// script: the relay (the outcome's delivery, the children's close)
	// is left to the engines' ticks.
	dying     *Manager
	stop      context.CancelFunc
	ctx       context.Context
	wg        sync.WaitGroup
	next      atomic.Int64 // worker ids
	killed    atomic.Int64
	ended     atomic.Int64 // finishes, fails and cancels acknowledged
	lost      atomic.Int64 // ends refused because the lease had expired
	expired   atomic.Int64 // leases the engines expired
	relayed   atomic.Int64 // relay entries the engines drove
	unrelayed atomic.Int64 // ends whose process died before relaying them
	killsMax  int64
	once      sync.Once
}

// chaosLease is the workers' lease: 5 s of the test's clock, 200 ms of
// wall time.
const chaosLease = 5 * time.Second

func startChaosFleet(t *testing.T, e *env, workers int, killsMax int64) *chaosFleet {
	t.Helper()
	ctx, stop := context.WithCancel(e.ctx)
	fl := &chaosFleet{t: t, e: e, stop: stop, ctx: ctx, killsMax: killsMax}
	for i := 0; i < 3; i++ {
		m := NewManager(e.reopenStore(e.client))
		fl.managers = append(fl.managers, m)
	}
	dying := e.reopenStore(e.client)
	dying.noRelay = true
	fl.dying = NewManager(dying)
	// The clock: +500 ms every 20 ms (the relay's grace is 400 ms of wall time).
	fl.wg.Add(1)
	go func() {
		defer fl.wg.Done()
		for ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
			e.clock.Advance(500 * time.Millisecond)
		}
	}()
	// Two engines on their own managers, ticking at once.
	for i := 0; i < 2; i++ {
		eng := NewWaitEngine(fl.managers[i], WithLogger(quietLogger()))
		fl.wg.Add(1)
		go func() {
			defer fl.wg.Done()
			for ctx.Err() == nil {
				rep := eng.Tick(ctx)
				if rep.Err != nil && ctx.Err() == nil {
					t.Errorf("tick: %v", rep.Err)
					return
				}
				fl.expired.Add(int64(rep.LeasesExpired))
				fl.relayed.Add(int64(rep.Relayed))
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	for i := 0; i < workers; i++ {
		fl.spawn()
	}
	return fl
}

// spawn starts one worker.
func (fl *chaosFleet) spawn() {
	n := fl.next.Add(1)
	m := fl.managers[int(n)%len(fl.managers)]
	id := "w" + strconv.FormatInt(n, 10)
	rnd := rand.New(rand.NewPCG(uint64(n), 23))
	fl.wg.Add(1)
	go func() {
		defer fl.wg.Done()
		for fl.ctx.Err() == nil {
			f, l, err := m.Claim(fl.ctx, chaosController, id, chaosLease, WithClaimWait(100*time.Millisecond))
			if err != nil {
				if fl.ctx.Err() == nil {
					fl.t.Errorf("%s: claim: %v", id, err)
				}
				return
			}
			if f == nil {
				continue
			}
			roll := rnd.IntN(100)
			if roll < 4 && fl.killed.Load() < fl.killsMax {
				// Killed holding the lease: a new worker takes its place.
				fl.killed.Add(1)
				fl.spawn()
				return
			}
			by := m
			dies := roll < 7 && fl.unrelayed.Load() < fl.killsMax
			if dies {
				by = fl.dying // killed between its end and the relay
			}
			if roll%4 == 0 {
				_, err = by.Fail(fl.ctx, f.ID, "chaos", WithLease(l))
			} else {
				_, err = by.Finish(fl.ctx, f.ID, map[string]string{"by": id}, WithLease(l))
			}
			if errors.Is(err, ErrCancelPending) {
				// The parent asked its children to stop (request_cancel).
				_, err = by.Cancel(fl.ctx, f.ID, WithLease(l))
			}
			switch {
			case err == nil && dies:
				fl.ended.Add(1)
				fl.unrelayed.Add(1)
				fl.spawn()
				return
			case err == nil:
				fl.ended.Add(1)
			case errors.Is(err, ErrLeaseLost):
				fl.lost.Add(1) // too slow: the lease expired, another worker has it
			case errors.Is(err, ErrAlreadyTerminal):
				// Its parent ended and cancelled it.
			default:
				if fl.ctx.Err() == nil {
					fl.t.Errorf("%s: end %s: %v", id, f.ID, err)
				}
				return
			}
		}
	}()
}

func (fl *chaosFleet) close() {
	fl.once.Do(func() {
		fl.stop()
		fl.wg.Wait()
		for _, m := range append(fl.managers, fl.dying) {
			_ = m.Close()
		}
	})
}

// kidCounts reads the parent's kidres counters: outcomes kept by status,
// and the number of outcomes (fields that are not counters).
func kidCounts(t testing.TB, e *env, parent uuid.UUID) (fin, failed, cancelled, outcomes int) {
	t.Helper()
	all, err := e.client.HGetAll(e.ctx, e.store.keys.kidResults(parent)).Result()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range all {
		n, _ := strconv.Atoi(v)
		switch k {
		case "#finished":
			fin = n
		case "#failed":
			failed = n
		case "#cancelled":
			cancelled = n
		default:
			outcomes++
		}
	}
	return fin, failed, cancelled, outcomes
}

// TestChildrenUnderChaos: a parent starts N children spread over every
// shard and joins them; a fleet of workers claims and ends them while
// workers are killed holding leases or right after a child's end (before
// its delivery to the parent), and two engines tick. Per join policy,
// the parent resumes exactly once with a summary that counts every child
// once, every child's outcome is kept once and matches the child, no
// relay work is left, and Verify is clean.
func TestChildrenUnderChaos(t *testing.T) {
	cases := []struct {
		name   string
		join   func(e *env, n int) Join
		policy ParentClosePolicy
		// end is what happens to the parent once it resumed: "" it
		// stays running; "finish" finishes it, which closes its children
		// still open by policy while the workers end them; "dies"
		// finishes it from a process that dies before closing them (the
		// engines' ticks do).
		end string
		why []string
	}{
		{"all", func(*env, int) Join { return Join{} }, ParentCloseAbandon, "", []string{"settled", "met"}},
		{"any", func(*env, int) Join { return Join{Need: 1} }, ParentCloseAbandon, "", []string{"met"}},
		{"n of m", func(_ *env, n int) Join { return Join{Need: n / 2} }, ParentCloseAbandon, "", []string{"met"}},
		{"fail fast", func(*env, int) Join { return Join{FailFast: true} }, ParentCloseCancel, "dies", []string{"fail_fast"}},
		{"deadline", func(e *env, _ int) Join { return Join{Deadline: e.clock.Now().Add(time.Second)} }, ParentCloseRequestCancel, "finish", []string{"timeout"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, e *env) {
				n := 1000
				if e.b.mini != nil {
					n = 200
				}
				whys := tc.why
				if testing.Short() {
					// So few children may all end before the deadline.
					n, whys = 40, append(whys, "met", "settled")
				}
				chaosJoin(t, e, n, tc.join(e, n), tc.policy, tc.end, whys)
			})
		})
	}
}

func chaosJoin(t *testing.T, e *env, n int, join Join, policy ParentClosePolicy, end string, whys []string) {
	ctx := e.ctx
	start := time.Now()
	p := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
	ins := make([]ChildInput, n)
	for i := range ins {
		in := seedInput()
		in.ControllerID = chaosController
		in.Goal = "child " + strconv.Itoa(i)
		ins[i] = ChildInput{Key: "k" + strconv.Itoa(i), Flow: in, OnParentClose: policy}
	}
	kids := must(t, try(e.m.StartChildren(ctx, p.ID, ins)))
	shards := map[int]bool{}
	for _, k := range kids {
		shards[e.store.keys.shardOf(k.ID)] = true
	}
	if n >= 200 && len(shards) < e.store.keys.shards {
		t.Fatalf("%d children in %d of %d shards", n, len(shards), e.store.keys.shards)
	}
	if w := must(t, try(e.m.SetWaiting(ctx, p.ID, WaitChildren(join)))); w.Status != StatusWaiting {
		t.Fatalf("parent %s before any child ended", w.Status)
	}
	fl := startChaosFleet(t, e, 8, int64(n/20+1))
	defer fl.close()

	// Wait for the parent's resume and for every child's outcome.
	var resumed *Flow
	deadline := time.Now().Add(45 * time.Second)
	for {
		if resumed == nil {
			got := must(t, try(e.m.Get(ctx, p.ID)))
			if got.Status != StatusWaiting {
				resumed = got
				switch end {
				case "finish":
					must(t, try(e.m.Finish(ctx, p.ID, nil)))
				case "dies":
					must(t, try(fl.dying.Finish(ctx, p.ID, nil)))
				}
			}
		}
		fin, failed, cancelled, _ := kidCounts(t, e, p.ID)
		if resumed != nil && fin+failed+cancelled == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 45 s: parent resumed %v, outcomes %d finished, %d failed, %d cancelled of %d; %d ends acknowledged, %d workers killed",
				resumed != nil, fin, failed, cancelled, n, fl.ended.Load(), fl.killed.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	fl.close()
	// What a call left to the relay, the engine drives after its grace.
	e.clock.Advance(relayGrace + time.Second)
	rep := e.engine().Tick(ctx)
	if rep.Err != nil {
		t.Fatalf("final tick: %v", rep.Err)
	}
	fl.relayed.Add(int64(rep.Relayed)) // the fleet's engines stopped before it

	// The parent resumed once, with a summary that adds up.
	if resumed.Status != StatusRunning {
		t.Fatalf("parent left its wait for %s", resumed.Status)
	}
	if k := countKind(eventKinds(t, e, p.ID), EventResumed); k != 1 {
		t.Fatalf("parent resumed %d times", k)
	}
	sum := summaryOf(t, resumed)
	ended := sum.Finished + sum.Failed + sum.Cancelled
	if sum.Total != n || ended+sum.Pending != n {
		t.Fatalf("summary %d total, %d ended, %d pending: want %d in all", sum.Total, ended, sum.Pending, n)
	}
	if !sliceHas(whys, sum.Why) {
		t.Fatalf("summary says %q, want one of %v", sum.Why, whys)
	}
	switch {
	case join.Need > 0 && sum.Why == "met" && sum.Finished < join.Need:
		t.Fatalf("met with %d finished, need %d", sum.Finished, join.Need)
	case join.FailFast && sum.Failed+sum.Cancelled == 0:
		t.Fatalf("fail-fast resume with no child failed: %+v", sum)
	case sum.Why == "timeout" && sum.Pending == 0:
		t.Fatalf("timeout with nothing pending: %+v", sum)
	case sum.Why == "settled" && sum.Pending != 0:
		t.Fatalf("settled with %d pending", sum.Pending)
	}
	if sum.ResultsOmitted {
		if len(sum.Results) != 0 {
			t.Fatalf("results omitted, yet %d given", len(sum.Results))
		}
	} else if len(sum.Results) != ended {
		t.Fatalf("%d results for %d ended children", len(sum.Results), ended)
	}
	seen := map[string]bool{}
	for _, r := range sum.Results {
		if seen[r.ID] || !r.Status.IsTerminal() {
			t.Fatalf("result %+v repeated or not ended", r)
		}
		seen[r.ID] = true
	}

	// Every child ended, and its outcome is kept once, as it ended.
	fin, failed, cancelled, outcomes := kidCounts(t, e, p.ID)
	if fin+failed+cancelled != n || outcomes != n {
		t.Fatalf("kidres: %d finished + %d failed + %d cancelled, %d outcomes; want %d", fin, failed, cancelled, outcomes, n)
	}
	byStatus := map[FlowStatus]int{}
	listed := 0
	cursor := ""
	for {
		page, next, err := e.m.ListChildren(ctx, p.ID, WithLimit(1000), WithCursor(cursor))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page {
			if !c.Ended {
				t.Fatalf("child %s (%s) has no outcome", c.ID, c.Key)
			}
			got := must(t, try(e.m.Get(ctx, c.ID)))
			if got.Status != c.Status {
				t.Fatalf("child %s is %s, its outcome says %s", c.ID, got.Status, c.Status)
			}
			byStatus[c.Status]++
			listed++
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if listed != n || byStatus[StatusFinished] != fin || byStatus[StatusFailed] != failed || byStatus[StatusCancelled] != cancelled {
		t.Fatalf("ListChildren: %d children %v, counters %d/%d/%d", listed, byStatus, fin, failed, cancelled)
	}
	if got := must(t, try(e.m.Get(ctx, p.ID))); got.Children != n {
		t.Fatalf("parent counts %d children, want %d", got.Children, n)
	}
	for sh := 0; sh < e.store.keys.shards; sh++ {
		if left := e.client.ZRange(ctx, e.store.keys.relay(sh), 0, -1).Val(); len(left) != 0 {
			t.Fatalf("shard %d has relay entries left: %v", sh, left)
		}
	}
	// A killed worker's child went back to the queue when the engines
	// expired its lease (unless its parent's end cancelled it first).
	if end == "" && fl.expired.Load() < fl.killed.Load() {
		t.Fatalf("%d workers killed holding a lease, %d leases expired", fl.killed.Load(), fl.expired.Load())
	}
	// A child ended by a process that died before relaying reached its
	// parent through the engines.
	if fl.relayed.Load() < fl.unrelayed.Load() {
		t.Fatalf("%d ends left to the relay, %d relay entries driven", fl.unrelayed.Load(), fl.relayed.Load())
	}
	mustVerify(t, e)
	t.Logf("%d children: %s with %d finished, %d failed, %d cancelled, %d pending; in the end %d/%d/%d; "+
		"%d workers killed holding a lease, %d leases expired, %d ends refused for a lost lease, "+
		"%d ends left to the relay, %d relay entries driven by ticks; %v",
		n, sum.Why, sum.Finished, sum.Failed, sum.Cancelled, sum.Pending, fin, failed, cancelled,
		fl.killed.Load(), fl.expired.Load(), fl.lost.Load(), fl.unrelayed.Load(), fl.relayed.Load(),
		time.Since(start).Round(time.Millisecond))
}

func sliceHas(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// TestLostReplyChildren loses one reply of each script of flows of
// flows, with go-redis re-sending the command (its default) and without
// (the caller, or the engine's tick, does it again): a child is
// registered and created once, and its outcome reaches its parent once.
func TestLostReplyChildren(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b)
			ctx := e.ctx
			open := func(maxRetries int) (*RedisStore, *Manager, *replyDropper) {
				c, d := lossyClientRetrying(t, b, maxRetries)
				s := e.reopenStore(c)
				if err := s.LoadScripts(ctx); err != nil {
					t.Fatal(err)
				}
				m := NewManager(s)
				t.Cleanup(func() { _ = m.Close() })
				return s, m, d
			}
			store, m, d := open(0)
			_, bare, bd := open(-1)
			// lost runs call with the next reply of sc lost and checks
			// that exactly one was.
			lost := func(name string, d *replyDropper, sc *script, call func() error) error {
				t.Helper()
				n := d.dropped.Load()
				d.armFor(sc)
				err := call()
				if got := d.dropped.Load() - n; got != 1 {
					t.Fatalf("%s: %d replies lost, want 1", name, got)
				}
				return err
			}
			// once checks that parent registered want children and kept
			// the outcomes of ended of them, once each.
			once := func(name string, parent uuid.UUID, want, ended int) {
				t.Helper()
				if got := must(t, try(e.m.Get(ctx, parent))); got.Children != want {
					t.Fatalf("%s: the parent counts %d children, want %d", name, got.Children, want)
				}
				if n := int(e.client.ZCard(ctx, e.store.keys.kids(parent)).Val()); n != want {
					t.Fatalf("%s: %d children registered, want %d", name, n, want)
				}
				fin, failed, cancelled, outcomes := kidCounts(t, e, parent)
				if fin+failed+cancelled != ended || outcomes != ended {
					t.Fatalf("%s: %d+%d+%d counted, %d outcomes kept; want %d", name, fin, failed, cancelled, outcomes, ended)
				}
			}
			// A child's create, lost nowhere, for its events.
			p := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
			ref := must(t, try(e.m.StartChild(ctx, p.ID, childInput("ref"))))
			createEvents := eventCount(t, e.m, ref.ID)

			// StartChild: the register's reply, then the create's.
			for _, step := range []struct {
				key string
				sc  *script
			}{{"spawn", store.scripts.spawnChildren}, {"create", store.scripts.create}} {
				var kid *Flow
				err := lost("StartChild, "+step.key, d, step.sc, func() (err error) {
					kid, err = m.StartChild(ctx, p.ID, childInput(step.key))
					return err
				})
				if err != nil || kid == nil || kid.ParentID != p.ID || kid.ChildKey != step.key {
					t.Fatalf("StartChild with the %s reply lost: %+v %v", step.key, kid, err)
				}
				if n := eventCount(t, e.m, kid.ID); n != createEvents {
					t.Fatalf("StartChild with the %s reply lost: %d events, want %d", step.key, n, createEvents)
				}
			}
			once("StartChild re-sent by go-redis", p.ID, 3, 0)
			// Without go-redis's re-send the call fails; the caller calls
			// again, and the child is there once.
			for _, step := range []struct {
				key string
				sc  *script
			}{{"bare spawn", store.scripts.spawnChildren}, {"bare create", store.scripts.create}} {
				err := lost("StartChild, "+step.key, bd, step.sc, func() error {
					_, err := bare.StartChild(ctx, p.ID, childInput(step.key))
					return err
				})
				if err == nil {
					t.Fatalf("StartChild with the %s reply lost and no re-send: no error", step.key)
				}
				kid := must(t, try(bare.StartChild(ctx, p.ID, childInput(step.key))))
				if n := eventCount(t, e.m, kid.ID); n != createEvents {
					t.Fatalf("StartChild again after the %s reply was lost: %d events, want %d", step.key, n, createEvents)
				}
			}
			once("StartChild called again", p.ID, 5, 0)

			// A child's end, and its delivery: the parent joins one child
			// and resumes once with one outcome.
			joined := func() (uuid.UUID, *Flow) {
				t.Helper()
				q := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
				kid := must(t, try(e.m.StartChild(ctx, q.ID, childInput("only"))))
				must(t, try(e.m.SetWaiting(ctx, q.ID, WaitChildren(Join{}))))
				return q.ID, kid
			}
			resumedOnce := func(name string, parent uuid.UUID) {
				t.Helper()
				got := must(t, try(e.m.Get(ctx, parent)))
				if got.Status != StatusRunning || summaryOf(t, got).Finished != 1 {
					t.Fatalf("%s: parent %s, state %s", name, got.Status, got.State)
				}
				if k := countKind(eventKinds(t, e, parent), EventResumed); k != 1 {
					t.Fatalf("%s: parent resumed %d times", name, k)
				}
				once(name, parent, 1, 1)
			}
			for _, step := range []struct {
				name string
				sc   *script
			}{{"Finish", store.scripts.transition}, {"deliver_child", store.scripts.deliverChild}} {
				q, kid := joined()
				err := lost(step.name, d, step.sc, func() error {
					f, err := m.Finish(ctx, kid.ID, map[string]int{"answer": 42})
					if err == nil && f.Status != StatusFinished {
						err = fmt.Errorf("finish says %s", f.Status)
					}
					return err
				})
				if err != nil {
					t.Fatalf("Finish with the %s reply lost: %v", step.name, err)
				}
				if k := countKind(eventKinds(t, e, kid.ID), EventFinished); k != 1 {
					t.Fatalf("%s: the child finished %d times", step.name, k)
				}
				resumedOnce(step.name+" reply lost", q)
			}
			// The delivery's reply lost for good: Finish succeeds (the
			// relay is its after-work), the entry stays, and the tick that
			// drives it after the grace finds the outcome kept.
			q, kid := joined()
			if err := lost("bare deliver_child", bd, store.scripts.deliverChild, func() error {
				_, err := bare.Finish(ctx, kid.ID, nil)
				return err
			}); err != nil {
				t.Fatalf("Finish with the delivery's reply lost: %v", err)
			}
			relay := e.store.keys.relay(e.store.keys.shardOf(kid.ID))
			if e.client.ZScore(ctx, relay, "d "+kid.ID.String()).Err() != nil {
				t.Fatal("the delivery's reply was lost, yet its relay entry is gone")
			}
			resumedOnce("deliver_child reply lost for good", q)
			e.clock.Advance(relayGrace + time.Second)
			if rep := e.engine().Tick(ctx); rep.Relayed != 1 || rep.Err != nil {
				t.Fatalf("tick after the grace: %+v", rep)
			}
			resumedOnce("deliver_child driven again by the tick", q)
			// The tick's own delivery loses its reply: go-redis re-sends
			// it and the outcome is kept once.
			q, kid = joined()
			broken := e.reopenStore(e.client)
			broken.noRelay = true
			must(t, try(broken.transition(ctx, transitionReq{id: kid.ID, to: StatusFinished, kind: EventFinished, payload: []byte(`{}`)})))
			e.clock.Advance(relayGrace + time.Second)
			eng := NewWaitEngine(m, WithLogger(quietLogger()))
			if err := lost("tick deliver_child", d, store.scripts.deliverChild, func() error {
				if rep := eng.Tick(ctx); rep.Relayed != 1 || rep.Err != nil {
					return fmt.Errorf("tick: %+v", rep)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			resumedOnce("the tick's delivery reply lost", q)
			mustVerify(t, e)
		})
	}
}
