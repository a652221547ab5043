package taskflow

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestExplainHiddenStates builds one flow in each situation Explain
// names and checks its explanation: the code, whether it is stuck, the
// facts, and the words a person reads.
func TestExplainHiddenStates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		defer e.m.Close()
		check := func(name string, f *Flow, code string, stuck bool, text string, facts map[string]any) *Explanation {
			t.Helper()
			x, err := e.m.Explain(ctx, f.ID)
			if err != nil {
				t.Fatalf("%s: Explain: %v", name, err)
			}
			if x.Code != code || x.Stuck != stuck || !strings.Contains(x.Text, text) || x.Moves == "" {
				t.Fatalf("%s: %+v, want code %s, stuck %v, text with %q", name, x, code, stuck, text)
			}
			for k, v := range facts {
				if got, ok := x.Facts[k]; !ok || got != v {
					t.Fatalf("%s: fact %s = %v (%T), want %v (%T); facts %v", name, k, got, got, v, v, x.Facts)
				}
			}
			return x
		}
		eng := e.engine()

		timer := e.waitingFlow(t, WaitTimer(e.clock.Now().Add(2*time.Hour)))
		// No engine has ticked yet: said, but a timer not due is not late.
		check("timer, no engine", timer, "waiting_timer", false, "no engine has ticked", map[string]any{"due_in_s": int64(7200)})
		eng.Tick(ctx)
		check("timer, engine ticked", timer, "waiting_timer", false, "an engine ticked 0s ago", map[string]any{"last_tick_age_s": int64(0)})

		// Engines silent for 2 minutes: an overdue timer is stuck.
		overdue := e.waitingFlow(t, WaitTimer(e.clock.Now().Add(time.Minute)))
		e.clock.Advance(2 * time.Minute)
		check("timer overdue", overdue, "waiting_timer", true, "no engine has ticked for 2m", map[string]any{"overdue_s": int64(60)})
		eng.Tick(ctx)

		// A created flow, new, then old.
		created := must(t, try(e.m.CreateManaged(ctx, fleetInput("ctl/explain"))))
		check("created", created, "created", false, "never started", nil)

		// Ready with nobody waiting for its controller: stuck after a minute.
		ready := must(t, try(e.m.CreateMirrored(ctx, fleetInput("ctl/explain"))))
		check("ready, new", ready, "ready", false, "No worker waits", map[string]any{"waiting_workers": int64(0)})
		e.clock.Advance(5 * time.Minute)
		check("ready, 5m", ready, "ready", true, "ready for 5m", map[string]any{"ready_s": int64(300)})
		check("created, 5m", created, "created", true, "5m ago", nil)
		eng.Tick(ctx)

		// Leased, then its lease expired with no engine ticking.
		f, l, err := e.m.Claim(ctx, "ctl/explain", "worker-7", time.Minute, WithClaimWait(0))
		if err != nil || f == nil {
			t.Fatalf("claim: %v %v", f, err)
		}
		check("leased", f, "leased", false, "worker-7", map[string]any{"worker_id": "worker-7", "lease_token": l.Token})
		e.clock.Advance(3 * time.Minute)
		check("lease expired", f, "lease_expired", true, "expired 2m ago", map[string]any{"lease_expired_s": int64(120)})
		eng.Tick(ctx) // requeues it
		check("requeued", f, "ready", false, "ready for 0s", nil)

		// An external event, with kept events that do not match it.
		ev := e.waitingFlow(t, WaitExternalEvent("email.reply", "msg-1"))
		must(t, try(e.m.TryResumeExternal(ctx, ev.ID, "email.bounce", "msg-1", map[string]string{"x": "y"})))
		must(t, try(e.m.TryResumeExternal(ctx, ev.ID, "sms.reply", "other", nil)))
		check("event", ev, "waiting_event", false, "2 event(s) kept for it do not match", map[string]any{
			"kept_unmatched": 2, "near_miss": `topic "email.bounce", correlation id "msg-1"`, "topic": "email.reply"})

		manual := e.waitingFlow(t, WaitManual())
		check("manual", manual, "waiting_manual", false, "resume it", nil)

		// Cancel requested: while waiting (the tick applies it), while running.
		cw := e.waitingFlow(t, WaitManual())
		must(t, try(e.m.RequestCancel(ctx, cw.ID)))
		check("cancel pending, waiting", cw, "cancel_pending", false, "next tick cancels it", nil)
		cr := must(t, try(e.m.CreateMirrored(ctx, fleetInput("ctl/other"))))
		must(t, try(e.m.RequestCancel(ctx, cr.ID)))
		check("cancel pending, running", cr, "cancel_pending", false, "ErrCancelPending", nil)

		// Waiting on children.
		p := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		kids := e.childrenOf(t, p.ID, 3, "")
		must(t, try(e.m.Finish(ctx, kids[0].ID, nil)))
		must(t, try(e.m.Fail(ctx, kids[1].ID, "no")))
		must(t, try(e.m.SetWaiting(ctx, p.ID, WaitChildren(Join{}))))
		check("children", p, "waiting_children", false, "1 of 3 finished (3 needed), 1 failed, 0 cancelled, 1 still open",
			map[string]any{"pending": 1, "finished": 1, "children": 3})

		// Ended.
		done := must(t, try(e.m.Finish(ctx, kids[2].ID, nil)))
		check("ended", done, "ended", false, "finished", map[string]any{"parent_id": p.ID.String()})

		// A healthy flow with an engine ticking and a worker waiting is
		// not stuck.
		eng.Tick(ctx)
		if x := check("timer, healthy", timer, "waiting_timer", false, "due in", nil); x.Stuck {
			t.Fatalf("healthy flow reported stuck: %+v", x)
		}
	})
}

func TestSplitCorrPrefix(t *testing.T) {
	for _, c := range [][2]string{{"email.reply", "msg-1"}, {"a:b", "c:d:"}, {"", ""}, {"t", " x "}} {
		topic, corr, ok := splitCorrPrefix(corrPrefix(c[0], c[1]))
		if !ok || topic != c[0] || corr != c[1] {
			t.Fatalf("%q: %q %q %v", c, topic, corr, ok)
		}
	}
	for _, bad := range []string{"", "x", "3:ab", "2:ab1:c", "2:ab1:c:extra"} {
		if _, _, ok := splitCorrPrefix(bad); ok {
			t.Fatalf("%q parsed", bad)
		}
	}
}

func TestStuckListsWhatNothingMoves(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		defer e.m.Close()
		eng := e.engine()
		// Healthy: an engine ticks, a timer is due later, a flow is ready
		// since a moment.
		e.waitingFlow(t, WaitTimer(e.clock.Now().Add(time.Hour)))
		eng.Tick(ctx)
		must(t, try(e.m.CreateMirrored(ctx, fleetInput("ctl/stuck"))))
		if got := must(t, try(e.m.Stuck(ctx, 0))); len(got) != 0 {
			t.Fatalf("healthy space: %d stuck: %+v", len(got), got[0])
		}
		// Two minutes later with no tick: the ready flow (no worker), the
		// created one, and a waiting flow with a cancel request are stuck.
		must(t, try(e.m.CreateManaged(ctx, fleetInput("ctl/stuck"))))
		cw := e.waitingFlow(t, WaitManual())
		must(t, try(e.m.RequestCancel(ctx, cw.ID)))
		// A flow with a concurrency key waits on its lane in the gate.
		gated := fleetInput("ctl/stuck")
		gated.Concurrency = []string{"tenant:acme"}
		must(t, try(e.m.CreateMirrored(ctx, gated)))
		e.clock.Advance(2 * time.Minute)
		got := must(t, try(e.m.Stuck(ctx, 0)))
		codes := map[string]int{}
		for _, x := range got {
			codes[x.Code]++
		}
		if codes["ready"] != 1 || codes["created"] != 1 || codes["cancel_pending"] != 1 || codes["gated"] != 1 {
			t.Fatalf("stuck codes %v", codes)
		}
		if got := must(t, try(e.m.Stuck(ctx, 1))); len(got) != 1 {
			t.Fatalf("limit 1: %d", len(got))
		}
		if _, err := e.m.Stuck(ctx, -1); err == nil {
			t.Fatal("limit -1 accepted")
		}
	})
}

// TestExplainGated builds a ready flow with concurrency keys or a
// priority in each place the gate keeps it (its lane, held by its turn,
// by a key's concurrency, by a key's rate; its relay entry pending;
// admitted; lost) and checks what Explain says.
func TestExplainGated(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		defer e.m.Close()
		check := func(name string, f *Flow, code string, stuck bool, text string, facts map[string]any) *Explanation {
			t.Helper()
			x, err := e.m.Explain(ctx, f.ID)
			if err != nil {
				t.Fatalf("%s: Explain: %v", name, err)
			}
			if x.Code != code || x.Stuck != stuck || !strings.Contains(x.Text, text) || x.Moves == "" {
				t.Fatalf("%s: %+v, want code %s, stuck %v, text with %q", name, x, code, stuck, text)
			}
			for k, v := range facts {
				if got, ok := x.Facts[k]; !ok || got != v {
					t.Fatalf("%s: fact %s = %v (%T), want %v (%T); facts %v", name, k, got, got, v, v, x.Facts)
				}
			}
			return x
		}
		absent := func(name string, x *Explanation, fact string) {
			t.Helper()
			if v, ok := x.Facts[fact]; ok {
				t.Fatalf("%s: fact %s = %v, want none; facts %v", name, fact, v, x.Facts)
			}
		}
		k := e.store.keys
		must0 := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must0(e.m.SetKeyLimit(ctx, KeyLimit{Key: "tenant:acme", Concurrency: 1}))
		must0(e.m.SetKeyLimit(ctx, KeyLimit{Key: "model:x", Rate: 1, Per: time.Hour}))

		// On its lane, nothing holds it but its turn.
		a := must(t, try(e.m.CreateMirrored(ctx, gatedInput("a", 0, "tenant:acme"))))
		x := check("free", a, "gated", false, "No limit of its keys holds it now", map[string]any{
			"priority": 0, "fair_group": "tenant:acme", "ahead_in_group": int64(0), "in_flight:tenant:acme": 0,
			"concurrency:tenant:acme": 1, "waiting_workers": int64(0), "lane": k.gateQueue(0, "tenant:acme", "ctl/gate")})
		absent("free", x, "held_by")
		if !strings.Contains(x.Text, `controller "ctl/gate"'s lane in the gate`) {
			t.Fatalf("free: %q does not say where it waits", x.Text)
		}

		// Its key's concurrency is full: held by it, behind nobody.
		fa, _ := claimNow(t, e, "w")
		if fa == nil || fa.ID != a.ID {
			t.Fatalf("claimed %v, want %s", fa, a.ID)
		}
		check("leased", a, "leased", false, "", nil)
		e.clock.Advance(time.Millisecond)
		b := must(t, try(e.m.CreateMirrored(ctx, gatedInput("b", 0, "tenant:acme"))))
		e.clock.Advance(time.Millisecond)
		b2 := must(t, try(e.m.CreateMirrored(ctx, gatedInput("b2", 0, "tenant:acme"))))
		check("concurrency", b, "gated", false, "1 of 1 flows in flight, its concurrency limit", map[string]any{
			"held_by": "tenant:acme concurrency", "in_flight:tenant:acme": 1, "ahead_in_group": int64(0)})
		check("behind", b2, "gated", false, "behind 1 flow(s) of its group", map[string]any{"ahead_in_group": int64(1)})

		// A rate bucket emptied by a claim: held until it refills.
		c := must(t, try(e.m.CreateMirrored(ctx, gatedInput("c", 0, "model:x"))))
		fc, _ := claimNow(t, e, "w")
		if fc == nil || fc.ID != c.ID {
			t.Fatalf("claimed %v, want %s", fc, c.ID)
		}
		d := must(t, try(e.m.CreateMirrored(ctx, gatedInput("d", 0, "model:x"))))
		refill := e.clock.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)
		check("rate", d, "gated", false, "its rate bucket (1 per 1h0m0s, burst 1) is empty and holds a claim again in 1h", map[string]any{
			"held_by": "model:x rate", "rate_refill_at:model:x": refill, "rate:model:x": "1 per 1h0m0s", "in_flight:model:x": 1})
		e.clock.Advance(30 * time.Minute)
		check("rate, half", d, "gated", false, "again in 30m", map[string]any{"rate_tokens:model:x": 0.5, "held_by": "model:x rate"})
		e.clock.Advance(30 * time.Minute)
		x = check("rate, refilled", d, "gated", false, "No limit of its keys holds it now", nil)
		absent("rate, refilled", x, "held_by")

		// A priority alone (no key) waits in the lane too, in group "".
		p := must(t, try(e.m.CreateMirrored(ctx, gatedInput("p", 4))))
		check("priority", p, "gated", false, "priority 4, fair group \"\"", map[string]any{"priority": 4, "fair_group": "", "concurrency_keys": ""})

		// Made ready, its relay entry pending, not yet on its lane: an
		// engine's tick queues it.
		g := must(t, try(e.m.CreateMirrored(ctx, gatedInput("g", 0, "tenant:other"))))
		sh := k.shardOf(g.ID)
		q := k.gateQueue(0, "tenant:other", "ctl/gate")
		must0(e.client.ZRem(ctx, q, g.ID.String()).Err())
		must0(e.client.HDel(ctx, k.gateQueued(), g.ID.String()).Err())
		must0(e.client.ZAdd(ctx, k.relay(sh), redis.Z{Score: float64(e.clock.Now().UnixMilli()), Member: "g " + g.ID.String()}).Err())
		check("pending", g, "gate_pending", false, "its relay entry is pending", nil)
		e.clock.Advance(5 * time.Minute)
		check("pending, no engine", g, "gate_pending", true, "no engine has ticked", nil)
		e.engine().Tick(ctx)
		check("queued by the tick", g, "gated", false, "No limit", nil)

		// Admitted for a worker taking its lease (by hand: off its lane,
		// with an admission).
		must0(e.client.ZRem(ctx, q, g.ID.String()).Err())
		exp := e.clock.Now().Add(time.Minute)
		must0(e.client.ZAdd(ctx, k.gateAdmissions(), redis.Z{Score: float64(exp.UnixMilli()), Member: g.ID.String() + "|tok"}).Err())
		check("admitted", g, "admitted", false, "taking its lease", map[string]any{"admission_expires_at": exp.UTC().Format(time.RFC3339)})
		must0(e.client.ZRem(ctx, k.gateAdmissions(), g.ID.String()+"|tok").Err())

		// Lost: on no lane, no relay entry, no admission.
		check("lost", g, "gated", true, "gate_unqueued", nil)
	})
}
