package taskflow

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/taskflow-dev/taskflow/fsck"
	"github.com/taskflow-dev/taskflow/observe"
)

// The gate's faults: each test names a defect a review found, and fails
// without its fix.

// Verify and its repair must leave a ready flow with concurrency keys
// on its lane: reported as missing from its shard's ready queue and
// repaired onto it, claim.lua leased it with no admission, past its
// key's limit.
func TestGateVerifyRepairKeepsFlowsOnTheirLane(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		defer e.m.Close()
		if err := e.m.SetKeyLimit(ctx, KeyLimit{Key: "tenant:v", Concurrency: 1}); err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			must(t, try(e.m.CreateMirrored(ctx, gatedInput(fmt.Sprint("job ", i), 0, "tenant:v"))))
			e.clock.Advance(time.Millisecond)
		}
		if f, _ := claimNow(t, e, "w1"); f == nil {
			t.Fatal("nothing claimed")
		}
		rep := must(t, try(e.m.Verify(ctx, fsck.WithRepair())))
		if !rep.OK() {
			t.Errorf("Verify of a flow waiting on its lane: %+v", rep.Problems)
		}
		if f, _ := claimNow(t, e, "w2"); f != nil {
			t.Fatalf("a second flow claimed under a limit of 1 after a repair: %s", f.ID)
		}
	})
}

// A fair group whose head its key refuses must not keep the groups behind
// it from being looked at: with more refused groups than an admission
// looks at, a group with room was never admitted.
func TestGateRefusedGroupsDoNotStarveOthers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		defer e.m.Close()
		busy := gateGroupBudget + 2
		for i := range busy {
			key := fmt.Sprintf("tenant:b%02d", i)
			if err := e.m.SetKeyLimit(ctx, KeyLimit{Key: key, Concurrency: 1}); err != nil {
				t.Fatal(err)
			}
			for j := range 2 {
				must(t, try(e.m.CreateMirrored(ctx, gatedInput(fmt.Sprint(key, j), 0, key))))
			}
		}
		for j := range 2 {
			must(t, try(e.m.CreateMirrored(ctx, gatedInput(fmt.Sprint("free ", j), 0, "tenant:zz"))))
		}
		// Every group once: each busy group is then full.
		for range busy + 1 {
			if f, _ := claimNow(t, e, "w"); f == nil {
				t.Fatal("lane ran dry")
			}
		}
		f, _ := claimNow(t, e, "w")
		if f == nil || f.Concurrency[0] != "tenant:zz" {
			t.Fatalf("claim with %d full groups ahead: %v, want tenant:zz's second flow", busy, f)
		}
	})
}

// A call that returns a running flow still leased (SetConcurrency on a
// leased flow) must not put it on its lane: the admission that met the
// entry spent a rate token on a flow its shard then refused.
func TestGateLeasedFlowStaysOffItsLane(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		defer e.m.Close()
		if err := e.m.SetKeyLimit(ctx, KeyLimit{Key: "model:r", Rate: 1, Per: time.Hour, Burst: 2}); err != nil {
			t.Fatal(err)
		}
		a := must(t, try(e.m.CreateMirrored(ctx, gatedInput("a", 0, "model:r"))))
		e.clock.Advance(time.Millisecond)
		b := must(t, try(e.m.CreateMirrored(ctx, gatedInput("b", 0, "model:r"))))
		f, l := claimNow(t, e, "w1")
		if f == nil || f.ID != a.ID {
			t.Fatalf("first claim %v, want %s", f, a.ID)
		}
		must(t, try(e.m.SetConcurrency(ctx, a.ID, []string{"model:r"}, 1, WithLease(l))))
		f, _ = claimNow(t, e, "w2")
		if f == nil || f.ID != b.ID {
			t.Fatalf("second claim of a burst of 2: %v, want %s", f, b.ID)
		}
	})
}

// Slots that lapse together (a crashed fleet's leases) must announce
// that the key has room again: the waiters of another controller
// sharing the key were woken only when their claim wait ended.
func TestGateLapsedSlotsAnnounceRoom(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		defer e.m.Close()
		if err := e.m.SetKeyLimit(ctx, KeyLimit{Key: "model:x", Concurrency: 2}); err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			in := gatedInput(fmt.Sprint("other ", i), 0, "model:x")
			in.ControllerID = "ctl/other"
			must(t, try(e.m.CreateMirrored(ctx, in)))
		}
		for range 2 {
			f, _, err := e.m.Claim(ctx, "ctl/other", "dies", time.Minute, WithClaimWait(0))
			if err != nil || f == nil {
				t.Fatalf("claim: %v %v", f, err)
			}
		}
		subs := must(t, try(e.store.subscribe(ctx, []string{e.store.keys.gateFreed()})))
		defer func() {
			for _, ps := range subs {
				_ = ps.Close()
			}
		}()
		e.clock.Advance(2 * time.Minute)
		if rep := e.engine().TickAt(ctx, e.clock.Now()); rep.Err != nil || rep.SlotsRepaired != 2 {
			t.Fatalf("tick: %+v %v", rep, rep.Err)
		}
		select {
		case <-subs[0].Channel():
		case <-time.After(5 * time.Second):
			t.Fatal("no announcement on the gate's freed channel once the slots of a full key lapsed")
		}
	})
}

// A lease the gate admitted must keep its slots through a copy of the
// Lease that went through JSON (another process, a queue): the copy
// lost the unexported mark, so Extend let the slots lapse under a live
// lease (a second flow was admitted past the limit), and Release left
// them held and the flow off its lane.
func TestGateLeaseCopyKeepsItsSlots(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		defer e.m.Close()
		if err := e.m.SetKeyLimit(ctx, KeyLimit{Key: "tenant:j", Concurrency: 1}); err != nil {
			t.Fatal(err)
		}
		a := must(t, try(e.m.CreateMirrored(ctx, gatedInput("a", 0, "tenant:j"))))
		e.clock.Advance(time.Millisecond)
		must(t, try(e.m.CreateMirrored(ctx, gatedInput("b", 0, "tenant:j"))))
		f, l := claimNow(t, e, "w1")
		if f == nil || f.ID != a.ID {
			t.Fatalf("first claim %v, want %s", f, a.ID)
		}
		raw, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		var cp Lease
		if err := json.Unmarshal(raw, &cp); err != nil {
			t.Fatal(err)
		}
		next := must(t, try(e.m.Extend(ctx, &cp, 10*time.Minute)))
		e.clock.Advance(2 * time.Minute) // past the first expiry, not the extended one
		if f, _ := claimNow(t, e, "w2"); f != nil {
			t.Fatalf("claimed %s under a limit of 1 beside an extended lease", f.ID)
		}
		if err := e.m.Release(ctx, next); err != nil {
			t.Fatal(err)
		}
		if f, _ := claimNow(t, e, "w2"); f == nil {
			t.Fatal("nothing claimed after the release of a lease copy")
		}
	})
}

// A flow made ready again while a drive of its relay entry 'g <id>' was
// under way must keep the new entry: the drive dropped it (it drops by
// name), and the flow, ready, on no lane and with no entry, was never
// claimed again. Here a tick queues the flow; before the tick drops the
// entry, a worker claims the flow and releases it in a process that dies
// after giving its slots back, before queueing it (its shard leaves the
// entry again).
func TestGateFlowReadyAgainDuringItsDriveIsNotLost(t *testing.T) {
	var hook func(ev observe.Op)
	obs := &observe.Observer{Op: func(_ context.Context, ev observe.Op) {
		if hook != nil {
			hook(ev)
		}
	}}
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		defer e.m.Close()
		hook = nil
		other := e.b.storeOptions(WithPrefix(e.prefix), WithClock(e.clock.Now))
		s2 := must(t, try(NewRedisStore(e.b.client(t), other...)))
		m2 := NewManager(s2)
		defer m2.Close()
		// releaseDies releases l in its shard and gives its slots back,
		// as a Release whose process died before it queued the flow on
		// its lane.
		releaseDies := func(l *Lease) {
			t.Helper()
			_, nowMs := s2.clock()
			if _, err := s2.run(ctx, s2.scripts.releaseLease, l.FlowID, s2.keys.flowKeys(l.FlowID, ""),
				s2.head(l.FlowID, nowMs, mutation{lease: l})...); err != nil {
				t.Error(err)
			}
			if err := s2.gateRelease(ctx, l.FlowID, l.Token, false); err != nil {
				t.Error(err)
			}
		}
		claim := func() (*Flow, *Lease) {
			t.Helper()
			f, l, err := m2.Claim(ctx, "ctl/gate", "w", time.Minute, WithClaimWait(0))
			if err != nil {
				t.Fatal(err)
			}
			return f, l
		}
		a := must(t, try(e.m.CreateMirrored(ctx, gatedInput("a", 0, "tenant:r"))))
		_, l := claim()
		releaseDies(l) // the entry 'g <a>' waits for a tick
		e.clock.Advance(time.Millisecond)
		fired := false
		hook = func(ev observe.Op) {
			if fired || ev.Op != "gate_enqueue" || ev.FlowID != a.ID {
				return
			}
			fired = true
			f, l := claim()
			if f == nil {
				t.Error("the queued flow was not claimed")
				return
			}
			e.clock.Advance(time.Millisecond)
			releaseDies(l)
		}
		if rep := e.engine().TickAt(ctx, e.clock.Now()); rep.Err != nil || !fired {
			t.Fatalf("tick: %v (hook fired: %v)", rep.Err, fired)
		}
		hook = nil
		e.clock.Advance(2 * time.Minute) // every lease and admission past
		e.engine().TickAt(ctx, e.clock.Now())
		if f, _ := claim(); f == nil || f.ID != a.ID {
			t.Fatalf("the flow made ready again during the drive: claim %v", f)
		}
	}, WithObserver(obs))
}

// A wait that an early event ends at once (SetWaiting returns the flow
// running, ready again) ends the lease it was made under: its slots
// must go back then, not when the lease would have expired (the key
// counted the flow twice once it was claimed again).
func TestGateEarlyEventWaitGivesItsSlotsBack(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		defer e.m.Close()
		if err := e.m.SetKeyLimit(ctx, KeyLimit{Key: "tenant:e", Concurrency: 1}); err != nil {
			t.Fatal(err)
		}
		a := must(t, try(e.m.CreateMirrored(ctx, gatedInput("a", 0, "tenant:e"))))
		_, l := claimNow(t, e, "w1")
		// Kept for the flow (it is running): its wait takes it at once.
		_, _ = e.m.TryResumeExternal(ctx, a.ID, "reply", "r-1", map[string]string{"ok": "yes"})
		f := must(t, try(e.m.SetWaiting(ctx, a.ID, WaitExternalEvent("reply", "r-1"), WithLease(l))))
		if f.Status != StatusRunning {
			t.Fatalf("after an early event: %s", f.Status)
		}
		if f, _ := claimNow(t, e, "w2"); f == nil || f.ID != a.ID {
			t.Fatalf("the flow the early event resumed was not claimed: %v", f)
		}
		use := must(t, try(e.m.KeyLimits(ctx)))
		if len(use) != 1 || use[0].InFlight != 1 {
			t.Fatalf("in flight with one lease: %+v", use)
		}
	})
}

// A controller id may hold a newline (a label is any UTF-8): the lane's
// record of a queued flow ('<controller>\n<gk>') then read as another
// controller's, and every admission dropped the flow as stale.
func TestGateControllerWithNewline(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		defer e.m.Close()
		in := gatedInput("a", 0, "tenant:n")
		in.ControllerID = "ctl\nodd|{x}:y"
		a := must(t, try(e.m.CreateMirrored(ctx, in)))
		f, _, err := e.m.Claim(ctx, in.ControllerID, "w", time.Minute, WithClaimWait(0))
		if err != nil || f == nil || f.ID != a.ID {
			t.Fatalf("claim: %v %v, want %s", f, err, a.ID)
		}
	})
}
