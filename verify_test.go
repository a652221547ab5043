package taskflow

import (
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/fsck"
)

// driveEveryStatus makes flows in every status and every kind of wait.
func driveEveryStatus(t testing.TB, e *env) map[string]*Flow {
	t.Helper()
	ctx := e.ctx
	out := map[string]*Flow{}
	out["created"] = must(t, try(e.m.CreateManaged(ctx, seedInput())))
	r := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
	must(t, try(e.m.RecordStepObservation(ctx, StepObservation{FlowID: r.ID, RunID: "r1", Status: StepRunning})))
	out["running"] = r
	out["timer"] = e.waitingFlow(t, WaitTimer(e.clock.Now().Add(time.Hour)))
	out["external"] = e.waitingFlow(t, WaitExternalEvent("mail", "m-1"))
	out["manual"] = e.waitingFlow(t, WaitManual())
	cw := e.waitingFlow(t, WaitManual())
	out["cancelwait"] = must(t, try(e.m.RequestCancel(ctx, cw.ID)))
	f := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
	out["finished"] = must(t, try(e.m.Finish(ctx, f.ID, map[string]int{"done": 1})))
	f = must(t, try(e.m.CreateMirrored(ctx, seedInput())))
	out["failed"] = must(t, try(e.m.Fail(ctx, f.ID, "boom")))
	f = must(t, try(e.m.CreateManaged(ctx, seedInput())))
	out["cancelled"] = must(t, try(e.m.Cancel(ctx, f.ID)))
	return out
}

func kindsOf(rep *fsck.Report) []string {
	var ks []string
	for _, p := range rep.Problems {
		ks = append(ks, string(p.Kind))
	}
	sort.Strings(ks)
	return ks
}

func dedup(s []string) []string {
	var out []string
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}

func TestVerifyCleanSpace(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		driveEveryStatus(t, e)
		rep := must(t, try(e.m.Verify(e.ctx)))
		if !rep.OK() || rep.Flows != 9 {
			t.Fatalf("clean space: flows %d problems %+v", rep.Flows, rep.Problems)
		}
	})
}

func TestVerifyFindsAndRepairs(t *testing.T) {
	type damage struct {
		name       string
		do         func(e *env, fs map[string]*Flow)
		kinds      []string
		repairable bool
	}
	k := func(e *env) keyspace { return e.store.keys }
	sh := func(e *env, f *Flow) int { return e.store.keys.shardOf(f.ID) }
	cases := []damage{
		{"status entry lost", func(e *env, fs map[string]*Flow) {
			f := fs["running"]
			e.client.ZRem(e.ctx, k(e).status(sh(e, f), StatusRunning), f.ID.String())
		}, []string{"status_index_missing"}, true},
		{"in two status indexes", func(e *env, fs map[string]*Flow) {
			f := fs["running"]
			e.client.ZAdd(e.ctx, k(e).status(sh(e, f), StatusFailed), redis.Z{Score: 1, Member: f.ID.String()})
		}, []string{"stale_index_entry", "status_index_extra"}, true},
		{"owner entry lost", func(e *env, fs map[string]*Flow) {
			f := fs["finished"]
			e.client.ZRem(e.ctx, k(e).owner(sh(e, f), f.OwnerSessionKey), f.ID.String())
		}, []string{"owner_index_missing"}, true},
		{"timer lost", func(e *env, fs map[string]*Flow) {
			f := fs["timer"]
			e.client.ZRem(e.ctx, k(e).timers(sh(e, f)), f.ID.String())
		}, []string{"timer_missing"}, true},
		{"timer on a running flow", func(e *env, fs map[string]*Flow) {
			f := fs["running"]
			e.client.ZAdd(e.ctx, k(e).timers(sh(e, f)), redis.Z{Score: 1, Member: f.ID.String()})
		}, []string{"stale_index_entry", "timer_extra"}, true},
		{"cancel entry on a running flow", func(e *env, fs map[string]*Flow) {
			f := fs["running"]
			e.client.SAdd(e.ctx, k(e).cancelWait(sh(e, f)), f.ID.String())
		}, []string{"cancelwait_extra", "stale_index_entry"}, true},
		{"cancel entry lost", func(e *env, fs map[string]*Flow) {
			f := fs["cancelwait"]
			e.client.SRem(e.ctx, k(e).cancelWait(sh(e, f)), f.ID.String())
		}, []string{"cancelwait_missing"}, true},
		{"correlation entry lost", func(e *env, fs map[string]*Flow) {
			f := fs["external"]
			e.client.ZRem(e.ctx, k(e).corr(sh(e, f)), corrMember("mail", "m-1", f.ID))
		}, []string{"corr_missing"}, true},
		{"correlation entry of a finished flow", func(e *env, fs map[string]*Flow) {
			f := fs["finished"]
			e.client.ZAdd(e.ctx, k(e).corr(sh(e, f)), redis.Z{Score: 0, Member: corrMember("x", "y", f.ID)})
		}, []string{"stale_index_entry"}, true},
		{"orphan keys", func(e *env, fs map[string]*Flow) {
			id := uuid.New()
			e.client.ZAdd(e.ctx, k(e).steps(id), redis.Z{Score: 1, Member: "r"})
			e.client.LPush(e.ctx, k(e).events(id), "{}")
			e.client.HSet(e.ctx, k(e).step(id, "r"), "id", "x")
			e.client.ZAdd(e.ctx, k(e).status(k(e).shardOf(id), StatusRunning), redis.Z{Score: 1, Member: id.String()})
		}, []string{"orphan_key", "orphan_key", "orphan_key", "stale_index_entry"}, true},
		{"step record lost", func(e *env, fs map[string]*Flow) {
			f := fs["running"]
			e.client.Del(e.ctx, k(e).step(f.ID, "r1"))
		}, []string{"step_missing"}, false},
		{"step not in the step set", func(e *env, fs map[string]*Flow) {
			f := fs["running"]
			e.client.ZRem(e.ctx, k(e).steps(f.ID), "r1")
		}, []string{"step_unindexed"}, true},
		{"garbage wait", func(e *env, fs map[string]*Flow) {
			f := fs["manual"]
			e.client.HSet(e.ctx, k(e).flow(f.ID), "wait", "}{")
		}, []string{"bad_wait"}, false},
		{"revision bumped by hand", func(e *env, fs map[string]*Flow) {
			f := fs["failed"]
			e.client.HIncrBy(e.ctx, k(e).flow(f.ID), "rev", 1)
		}, []string{"event_revision"}, false},
		{"entry in another shard's index", func(e *env, fs map[string]*Flow) {
			f := fs["running"]
			other := (k(e).shardOf(f.ID) + 1) % e.store.Shards()
			e.client.ZAdd(e.ctx, k(e).status(other, StatusRunning), redis.Z{Score: 1, Member: f.ID.String()})
			e.client.ZAdd(e.ctx, k(e).timers(other), redis.Z{Score: 1, Member: "not-a-flow"})
		}, []string{"stale_index_entry", "stale_index_entry"}, true},
		{"index key of the wrong type", func(e *env, fs map[string]*Flow) {
			f := fs["timer"]
			e.client.Del(e.ctx, k(e).timers(sh(e, f)))
			e.client.Set(e.ctx, k(e).timers(sh(e, f)), "oops", 0)
		}, []string{"unreadable_flow", "wrong_type"}, false},
		{"running flow off its ready queue", func(e *env, fs map[string]*Flow) {
			f := fs["running"]
			e.client.ZRem(e.ctx, k(e).ready(sh(e, f), f.ControllerID), f.ID.String())
		}, []string{"ready_missing"}, true},
		{"finished flow on a ready queue", func(e *env, fs map[string]*Flow) {
			f := fs["finished"]
			e.client.ZAdd(e.ctx, k(e).ready(sh(e, f), f.ControllerID), redis.Z{Score: 1, Member: f.ID.String()})
			e.client.ZAdd(e.ctx, k(e).ready(sh(e, f), "someone/else"), redis.Z{Score: 1, Member: fs["running"].ID.String()})
		}, []string{"ready_extra", "stale_index_entry", "stale_index_entry"}, true},
		{"lease of a cancelled flow", func(e *env, fs map[string]*Flow) {
			f := fs["cancelled"]
			// With its claim memory: the repair drops both.
			e.client.HSet(e.ctx, k(e).leases(sh(e, f)), f.ID.String(), `tok|1|"w"`, "t:tok", f.ID.String())
		}, []string{"lease_extra", "stale_index_entry"}, true},
		{"claim memory of a lease that ended", func(e *env, fs map[string]*Flow) {
			f, r := fs["finished"], fs["running"]
			e.client.HSet(e.ctx, k(e).leases(sh(e, f)), "t:gone", f.ID.String())
			e.client.HSet(e.ctx, k(e).leases(sh(e, r)), "t:junk", "not-a-flow")
		}, []string{"stale_index_entry", "stale_index_entry"}, true},
		{"unknown key", func(e *env, fs map[string]*Flow) {
			e.client.Set(e.ctx, k(e).tag(3)+":mystery", "x", 0)
		}, []string{"unknown_key"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, e *env) {
				fs := driveEveryStatus(t, e)
				c.do(e, fs)
				rep := must(t, try(e.m.Verify(e.ctx)))
				got := kindsOf(rep)
				if c.name == "index key of the wrong type" {
					// Every flow of that shard is unreadable: how many
					// depends on where the flows landed.
					got = dedup(got)
				}
				if strings.Join(got, ",") != strings.Join(c.kinds, ",") {
					t.Fatalf("problems %v, want %s: %+v", got, strings.Join(c.kinds, ","), rep.Problems)
				}
				before := e.dump()
				rep2 := must(t, try(e.m.Verify(e.ctx)))
				if len(rep2.Problems) != len(rep.Problems) {
					t.Fatal("Verify is not repeatable")
				}
				if after := e.dump(); len(after) != len(before) {
					t.Fatal("Verify without repair changed Redis")
				}
				fixed := must(t, try(e.m.Verify(e.ctx, fsck.WithRepair())))
				if c.repairable && fixed.Unrepaired() != 0 {
					t.Fatalf("unrepaired: %+v", fixed.Problems)
				}
				final := must(t, try(e.m.Verify(e.ctx)))
				if c.repairable && !final.OK() {
					t.Fatalf("after repair: %+v", final.Problems)
				}
				if !c.repairable && final.OK() {
					t.Fatal("a problem that needs a person vanished")
				}
				// The flows still work after a repair.
				if c.repairable {
					if _, err := e.m.UpdateState(e.ctx, fs["running"].ID, map[string]int{"after": 1}, ""); err != nil {
						t.Fatal(err)
					}
				}
			})
		})
	}
}

// TestVerifyEarlyEvents: Verify knows the keys of early events (lists of
// both kinds, a claim) and reports them broken.
func TestVerifyEarlyEvents(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := e.runningFlow(t)
		must(t, try(e.m.TryResumeExternal(e.ctx, f.ID, "t", "flow", "x")))
		must(t, try(e.m.ResumeByCorrelation(e.ctx, "t", "pair", "y")))
		must(t, try(e.m.ResumeByCorrelation(e.ctx, "t", "claimed", "z")))
		w := e.waitingFlow(t, WaitManual())
		cp := corrPrefix("t", "claimed")
		if _, _, ok, err := e.store.takeEarly(e.ctx, w.ID, cp, "", newEventID()); !ok || err != nil {
			t.Fatalf("take: %v %v", ok, err)
		}
		rep := requireVerifyClean(t, e.m)
		if rep.Keys == 0 {
			t.Fatal("verify saw no keys")
		}
		r := e.store.keys.rendezvous(cp)
		pair := e.store.keys.earlyPair(corrPrefix("t", "pair"))
		e.client.Persist(e.ctx, pair)
		e.client.RPush(e.ctx, e.store.keys.earlyFlow(f.ID), "garbage")
		e.client.ZRem(e.ctx, e.store.keys.claimDue(r), must(t, try(e.client.HKeys(e.ctx, e.store.keys.claims(r)).Result()))[0])
		got := must(t, try(e.m.Verify(e.ctx)))
		kinds := map[fsck.Kind]string{}
		for _, p := range got.Problems {
			kinds[p.Kind] = p.Key
		}
		want := map[fsck.Kind]string{
			fsck.EarlyNoTTL:     pair,
			fsck.BadEarlyEvent:  e.store.keys.earlyFlow(f.ID),
			fsck.ClaimUnindexed: e.store.keys.claims(r),
		}
		if !reflect.DeepEqual(kinds, want) {
			t.Fatalf("problems %+v, want %v", got.Problems, want)
		}
	})
}

// TestVerifySchedules: Verify checks the schedules' keys: an active
// schedule missing from the due or names index, a paused one in the due
// index, entries naming no schedule and an undecodable schedule are
// reported; repair fixes all but the last (which needs a person), and
// the repaired schedule fires.
func TestVerifySchedules(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ok := must(t, try(e.m.CreateSchedule(e.ctx, scheduleInput("ok", time.Minute))))
		p := scheduleInput("held", time.Minute)
		p.Paused = true
		must(t, try(e.m.CreateSchedule(e.ctx, p)))
		must(t, try(e.m.CreateSchedule(e.ctx, scheduleInput("bad", time.Minute))))
		mustVerify(t, e)
		due, names := e.store.keys.schedDue(), e.store.keys.schedNames()
		e.client.ZRem(e.ctx, due, "ok")
		e.client.ZRem(e.ctx, names, "ok")
		e.client.ZAdd(e.ctx, due, redis.Z{Score: 1, Member: "held"}, redis.Z{Score: 1, Member: "ghost-due"})
		e.client.ZAdd(e.ctx, names, redis.Z{Score: 0, Member: "ghost-name"})
		e.client.HSet(e.ctx, e.store.keys.schedule("bad"), "spec", "{")
		kinds := func(rep *fsck.Report) map[string]bool {
			out := map[string]bool{}
			for _, pr := range rep.Problems {
				out[string(pr.Kind)+" "+pr.Member+" "+strings.TrimPrefix(pr.Key, e.prefix)+" "+map[bool]string{true: "repaired", false: "left"}[pr.Repaired]] = true
			}
			return out
		}
		want := func(repaired string) map[string]bool {
			return map[string]bool{
				"schedule_unindexed ok :{sched}:due " + repaired:             true,
				"schedule_unindexed ok :{sched}:names " + repaired:           true,
				"schedule_index_stale held :{sched}:due " + repaired:         true,
				"schedule_index_stale ghost-due :{sched}:due " + repaired:    true,
				"schedule_index_stale ghost-name :{sched}:names " + repaired: true,
				"bad_schedule bad :{sched}:s:bad left":                       true,
			}
		}
		rep := must(t, try(e.m.Verify(e.ctx)))
		if got := kinds(rep); !reflect.DeepEqual(got, want("left")) {
			t.Fatalf("report %v\nwant %v", got, want("left"))
		}
		rep = must(t, try(e.m.Verify(e.ctx, fsck.WithRepair())))
		if got := kinds(rep); !reflect.DeepEqual(got, want("repaired")) {
			t.Fatalf("repair %v\nwant %v", got, want("repaired"))
		}
		rep = must(t, try(e.m.Verify(e.ctx)))
		if got := kinds(rep); len(got) != 1 || !got["bad_schedule bad :{sched}:s:bad left"] {
			t.Fatalf("after repair %v", got)
		}
		e.client.Del(e.ctx, e.store.keys.schedule("bad"))
		e.client.ZRem(e.ctx, due, "bad")
		e.client.ZRem(e.ctx, names, "bad")
		mustVerify(t, e)
		e.clock.Advance(time.Minute)
		if rep := e.engine().TickAt(e.ctx, ok.NextFire); rep.Fired != 1 || !e.fireExists(t, ok, ok.NextFire) {
			t.Fatalf("the repaired schedule did not fire: %+v (%v)", rep, rep.Err)
		}
	})
}

// TestVerifyGate: Verify knows where the gate keeps ready flows with
// concurrency keys or a priority and the slots of their leases; it
// reports (and repairs) a ready flow no claim finds, an orphaned slot,
// and a gated flow on its shard's ready queue, made by hand; it leaves
// what is only in motion (a relay entry pending, an admission being
// leased).
func TestVerifyGate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		defer e.m.Close()
		k := e.store.keys
		must0 := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		verify := func(name string, want ...string) {
			t.Helper()
			rep := must(t, try(e.m.Verify(ctx)))
			if got := kindsOf(rep); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
				t.Fatalf("%s: problems %v, want %v: %+v", name, got, want, rep.Problems)
			}
			if len(want) == 0 {
				return
			}
			fixed := must(t, try(e.m.Verify(ctx, fsck.WithRepair())))
			if fixed.Unrepaired() != 0 || len(fixed.Problems) != len(want) {
				t.Fatalf("%s: repair: %+v", name, fixed.Problems)
			}
			if final := must(t, try(e.m.Verify(ctx))); !final.OK() {
				t.Fatalf("%s: after repair: %+v", name, final.Problems)
			}
		}
		inFlight := func() int {
			t.Helper()
			for _, u := range must(t, try(e.m.KeyLimits(ctx))) {
				if u.Key == "tenant:acme" {
					return u.InFlight
				}
			}
			t.Fatal("no limit of tenant:acme")
			return 0
		}
		must0(e.m.SetKeyLimit(ctx, KeyLimit{Key: "tenant:acme", Concurrency: 5}))
		// A clean space: ready flows in the lane (keys, a priority alone),
		// a leased one holding its slot, an ended one.
		leased := must(t, try(e.m.CreateMirrored(ctx, gatedInput("leased", 0, "tenant:acme"))))
		f, l := claimNow(t, e, "w")
		if f == nil || f.ID != leased.ID {
			t.Fatalf("claimed %v", f)
		}
		ready := must(t, try(e.m.CreateMirrored(ctx, gatedInput("ready", 0, "tenant:acme"))))
		must(t, try(e.m.CreateMirrored(ctx, gatedInput("urgent", 3))))
		ended := must(t, try(e.m.CreateMirrored(ctx, gatedInput("ended", 0, "tenant:acme"))))
		must(t, try(e.m.Finish(ctx, ended.ID, nil)))
		verify("clean")
		if n := inFlight(); n != 1 {
			t.Fatalf("in flight %d, want 1", n)
		}

		// Off its lane with nothing to queue it: gate_unqueued; the
		// repair queues it, and a claim then finds it.
		q := k.gateQueue(0, "tenant:acme", "ctl/gate")
		must0(e.client.ZRem(ctx, q, ready.ID.String()).Err())
		must0(e.client.HDel(ctx, k.gateQueued(), ready.ID.String()).Err())
		verify("off its lane", "gate_unqueued")
		// On its queue without its entry in the queued flows (an
		// admission would drop it as stale): gate_unqueued too.
		must0(e.client.HDel(ctx, k.gateQueued(), ready.ID.String()).Err())
		verify("entry without meta", "gate_unqueued")
		// A relay entry pending, or an admission being leased: in motion.
		must0(e.client.ZRem(ctx, q, ready.ID.String()).Err())
		must0(e.client.ZAdd(ctx, k.relay(k.shardOf(ready.ID)), redis.Z{Score: float64(e.clock.Now().UnixMilli()), Member: "g " + ready.ID.String()}).Err())
		verify("relay pending")
		must0(e.client.ZRem(ctx, k.relay(k.shardOf(ready.ID)), "g "+ready.ID.String()).Err())
		member := ready.ID.String() + "|tok-taking"
		exp := float64(e.clock.Now().Add(time.Minute).UnixMilli())
		must0(e.client.ZAdd(ctx, k.gateAdmissions(), redis.Z{Score: exp, Member: member}).Err())
		verify("admitted, being leased")
		must0(e.client.ZRem(ctx, k.gateAdmissions(), member).Err())
		verify("lost again", "gate_unqueued")

		// Orphaned slots: an ended flow's admission (its keys' slots and
		// the admission), a slot of a flow that does not exist that no
		// admission lists, a slot of a leased flow under another token.
		orphan := ended.ID.String() + "|tok-old"
		must0(e.client.ZAdd(ctx, k.gateHeld("tenant:acme"), redis.Z{Score: exp, Member: orphan}).Err())
		must0(e.client.ZAdd(ctx, k.gateAdmissions(), redis.Z{Score: exp, Member: orphan}).Err())
		must0(e.client.HSet(ctx, k.gateAdmitKeys(), orphan, "tenant:acme").Err())
		must0(e.client.ZAdd(ctx, k.gateHeld("tenant:acme"), redis.Z{Score: exp, Member: uuid.NewString() + "|tok-gone"}).Err())
		must0(e.client.ZAdd(ctx, k.gateHeld("tenant:acme"), redis.Z{Score: exp, Member: leased.ID.String() + "|tok-other"}).Err())
		if n := inFlight(); n != 4 {
			t.Fatalf("in flight %d, want 4", n)
		}
		verify("orphaned slots", "gate_slot_orphaned", "gate_slot_orphaned", "gate_slot_orphaned", "gate_slot_orphaned")
		if n := inFlight(); n != 1 {
			t.Fatalf("in flight after repair %d, want 1 (the live lease)", n)
		}
		if ok := must(t, try(e.client.HExists(ctx, k.gateAdmitKeys(), orphan).Result())); ok {
			t.Fatal("the orphaned admission's keys are still listed")
		}
		// An expired slot is not judged: the gate drops it itself.
		must0(e.client.ZAdd(ctx, k.gateHeld("tenant:acme"), redis.Z{Score: float64(e.clock.Now().Add(-time.Second).UnixMilli()), Member: orphan}).Err())
		verify("expired slot")
		must0(e.client.ZRem(ctx, k.gateHeld("tenant:acme"), orphan).Err())

		// A gated flow on its shard's ready queue (a claim there would
		// bypass the gate): ready_extra; the repair takes it off and
		// leaves it on its lane.
		must0(e.client.ZAdd(ctx, k.ready(k.shardOf(ready.ID), "ctl/gate"), redis.Z{Score: 1, Member: ready.ID.String()}).Err())
		verify("on a shard queue", "ready_extra")
		if _, err := e.client.ZScore(ctx, k.ready(k.shardOf(ready.ID), "ctl/gate"), ready.ID.String()).Result(); err != redis.Nil {
			t.Fatalf("still on its shard's queue: %v", err)
		}
		// The flows still work: the lane gives the urgent flow, then the
		// repaired one; the live lease finishes.
		claimed := map[uuid.UUID]bool{}
		for range 2 {
			f, _ := claimNow(t, e, "w")
			if f == nil {
				t.Fatal("the lane ran dry")
			}
			claimed[f.ID] = true
		}
		if !claimed[ready.ID] {
			t.Fatalf("the repaired flow was not claimed: %v", claimed)
		}
		must(t, try(e.m.Finish(ctx, leased.ID, nil, WithLease(l))))
		verify("end")
	})
}
