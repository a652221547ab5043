package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// runningFlow creates a running flow.
func (e *env) runningFlow(t testing.TB) *Flow {
	t.Helper()
	return must(t, try(e.m.CreateMirrored(e.ctx, seedInput())))
}

func (e *env) countEarly(t testing.TB) int {
	t.Helper()
	return must(t, try(e.store.countEarlyEvents(e.ctx)))
}

// requireEarlyResumed checks that f was resumed at once by a kept event:
// running, no wait, the payload as resume_event, and the log's newest
// entries are resumed then waiting.
func requireEarlyResumed(t testing.TB, e *env, f *Flow, want any) {
	t.Helper()
	if f.Status != StatusRunning || f.Wait != nil {
		t.Fatalf("flow %s is %s with wait %s, want running", f.ID, f.Status, f.Wait)
	}
	st := stateOf(t, f)
	got, has := st["resume_event"]
	if want == nil {
		if has {
			t.Fatalf("resume_event %v, want none", got)
		}
	} else if !reflect.DeepEqual(got, want) {
		t.Fatalf("resume_event %#v, want %#v", got, want)
	}
	kinds := eventKinds(t, e, f.ID)
	if len(kinds) < 2 || kinds[0] != EventResumed || kinds[1] != EventWaiting {
		t.Fatalf("events %v, want resumed then waiting at the head", kinds)
	}
	if stored := must(t, try(e.m.Get(e.ctx, f.ID))); !reflect.DeepEqual(stored, f) {
		t.Fatalf("returned %+v, stored %+v", f, stored)
	}
}

func TestEarlyEventByFlowID(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := e.runningFlow(t)
		got, err := e.m.TryResumeExternal(e.ctx, f.ID, "mail", "m-1", map[string]string{"from": "bob"})
		if got != nil || err != nil {
			t.Fatalf("early event: %v %v", got, err)
		}
		// Another pair's event stays kept; an unknown flow's is not kept.
		must(t, try(e.m.TryResumeExternal(e.ctx, f.ID, "mail", "m-2", nil)))
		must(t, try(e.m.TryResumeExternal(e.ctx, uuid.New(), "mail", "m-1", nil)))
		if n := e.countEarly(t); n != 2 {
			t.Fatalf("%d kept events, want 2", n)
		}
		w := must(t, try(e.m.SetWaiting(e.ctx, f.ID, WaitExternalEvent("mail", "m-1"))))
		requireEarlyResumed(t, e, w, map[string]any{"from": "bob"})
		if w.Revision != f.Revision+2 {
			t.Fatalf("revision %d, want %d", w.Revision, f.Revision+2)
		}
		if n := e.countEarly(t); n != 1 {
			t.Fatalf("%d kept events after the take, want 1", n)
		}
		// Taken once: the next wait on the same pair waits.
		w = must(t, try(e.m.SetWaiting(e.ctx, f.ID, WaitExternalEvent("mail", "m-1"))))
		if w.Status != StatusWaiting {
			t.Fatalf("second wait is %s", w.Status)
		}
		requireVerifyClean(t, e.m)
		// A terminal flow keeps nothing.
		must(t, try(e.m.Cancel(e.ctx, f.ID)))
		must(t, try(e.m.TryResumeExternal(e.ctx, f.ID, "mail", "m-9", nil)))
		if n := e.countEarly(t); n != 1 {
			t.Fatalf("%d kept events, want 1", n)
		}
	})
}

func TestEarlyEventByCorrelation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		a, b, c := e.runningFlow(t), e.runningFlow(t), e.runningFlow(t)
		for i := 1; i <= 2; i++ {
			if got := must(t, try(e.m.ResumeByCorrelation(e.ctx, "reply", "job-7", map[string]int{"n": i}))); len(got) != 0 {
				t.Fatalf("resumed %d flows with nobody waiting", len(got))
			}
		}
		if n := e.countEarly(t); n != 2 {
			t.Fatalf("%d kept events, want 2", n)
		}
		// Oldest first, each event to one flow.
		wa := must(t, try(e.m.SetWaiting(e.ctx, a.ID, WaitExternalEvent("reply", "job-7"))))
		requireEarlyResumed(t, e, wa, map[string]any{"n": float64(1)})
		wb := must(t, try(e.m.SetWaiting(e.ctx, b.ID, WaitExternalEvent("reply", "job-7"), WithoutState())))
		if wb.Status != StatusRunning || wb.State != nil {
			t.Fatalf("lean early resume: %+v", wb)
		}
		requireEarlyResumed(t, e, must(t, try(e.m.Get(e.ctx, b.ID))), map[string]any{"n": float64(2)})
		wc := must(t, try(e.m.SetWaiting(e.ctx, c.ID, WaitExternalEvent("reply", "job-7"))))
		if wc.Status != StatusWaiting {
			t.Fatalf("third flow is %s with no event left", wc.Status)
		}
		// A live event goes to one waiter, the next to the next.
		x := e.waitingFlow(t, WaitExternalEvent("reply", "job-7"))
		r1 := must(t, try(e.m.ResumeByCorrelation(e.ctx, "reply", "job-7", "x")))
		r2 := must(t, try(e.m.ResumeByCorrelation(e.ctx, "reply", "job-7", "y")))
		if len(r1) != 1 || len(r2) != 1 || r1[0].ID == r2[0].ID {
			t.Fatalf("live events resumed %v and %v", r1, r2)
		}
		for _, id := range []uuid.UUID{c.ID, x.ID} {
			if g := must(t, try(e.m.Get(e.ctx, id))); g.Status != StatusRunning {
				t.Fatalf("flow %s is %s", id, g.Status)
			}
		}
		if n := e.countEarly(t); n != 0 {
			t.Fatalf("%d kept events left", n)
		}
		requireVerifyClean(t, e.m)
	})
}

// TestEarlyEventThroughBridge: both kinds of bridge message, published
// before the flows wait, are kept and taken by SetWaiting.
func TestEarlyEventThroughBridge(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		byID, byCorr := e.runningFlow(t), e.runningFlow(t)
		must(t, try(0, e.m.PublishResume(e.ctx, ResumeRequest{FlowID: byID.ID, Topic: "webhook", CorrelationID: "abc", Payload: map[string]int{"n": 1}})))
		must(t, try(0, e.m.PublishResume(e.ctx, ResumeRequest{Topic: "webhook", CorrelationID: "def", Payload: "two"})))
		eng := e.engine(WithBridgeBlock(20 * time.Millisecond))
		ctx, cancel := context.WithCancel(e.ctx)
		done := make(chan error, 1)
		go func() { done <- eng.RunResumeBridge(ctx) }()
		deadline := time.Now().Add(5 * time.Second)
		for eng.BridgeStats().Handled < 2 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done
		if st := eng.BridgeStats(); st.Handled != 2 || st.Resumed != 0 || st.Failed != 0 {
			t.Fatalf("stats %+v", st)
		}
		if n := e.countEarly(t); n != 2 {
			t.Fatalf("%d kept events, want 2", n)
		}
		requireEarlyResumed(t, e, must(t, try(e.m.SetWaiting(e.ctx, byID.ID, WaitExternalEvent("webhook", "abc")))), map[string]any{"n": float64(1)})
		requireEarlyResumed(t, e, must(t, try(e.m.SetWaiting(e.ctx, byCorr.ID, WaitExternalEvent("webhook", "def")))), "two")
		requireVerifyClean(t, e.m)
	})
}

// TestEarlyEventResentBridgeMessage: a bridge message handled twice (its
// handler died before acknowledging) is kept once, and not kept again
// once a flow used it.
func TestEarlyEventResentBridgeMessage(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := e.runningFlow(t)
		for i := 0; i < 2; i++ {
			must(t, try(e.resumeWithID(f.ID, "t", "c", "p", "s1-0")))
			must(t, try(e.resumeByCorrWithID("t", "d", "q", "s2-0")))
		}
		if n := e.countEarly(t); n != 2 {
			t.Fatalf("%d kept events, want 2", n)
		}
		// Taken, then the same messages handled again: not kept again.
		must(t, try(e.m.SetWaiting(e.ctx, f.ID, WaitExternalEvent("t", "c"))))
		g := e.runningFlow(t)
		requireEarlyResumed(t, e, must(t, try(e.m.SetWaiting(e.ctx, g.ID, WaitExternalEvent("t", "d")))), "q")
		// A re-sent event that resumed the flow answers with the flow as it
		// is (the outcome of the first run) and applies nothing.
		before := must(t, try(e.m.Get(e.ctx, f.ID)))
		if again := must(t, try(e.resumeWithID(f.ID, "t", "c", "p", "s1-0"))); again != nil && again.Revision != before.Revision {
			t.Fatalf("a re-sent event resumed the flow again: %+v", again)
		}
		must(t, try(e.resumeByCorrWithID("t", "d", "q", "s2-0")))
		if n := e.countEarly(t); n != 0 {
			t.Fatalf("%d kept events after the messages came again, want 0", n)
		}
		// An event the bridge delivered live is remembered too.
		h := e.waitingFlow(t, WaitExternalEvent("t", "live"))
		for i := 0; i < 2; i++ {
			must(t, try(e.resumeByCorrWithID("t", "live", nil, "s3-0")))
		}
		if g := must(t, try(e.m.Get(e.ctx, h.ID))); g.Status != StatusRunning || e.countEarly(t) != 0 {
			t.Fatalf("live bridge event: flow %s, %d kept", g.Status, e.countEarly(t))
		}
		requireVerifyClean(t, e.m)
	})
}

func TestEarlyEventExpiresAndCap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		for i := 0; i < 5; i++ {
			must(t, try(e.m.ResumeByCorrelation(e.ctx, "t", "c", i)))
		}
		if n := e.countEarly(t); n != 3 {
			t.Fatalf("%d kept events past a cap of 3", n)
		}
		list := e.store.keys.earlyPair(corrPrefix("t", "c"))
		if ttl := e.client.PTTL(e.ctx, list).Val(); ttl <= 0 || ttl > time.Minute {
			t.Fatalf("early-event list TTL %s, want (0, 1m]", ttl)
		}
		// The newest three are kept, oldest first.
		for _, want := range []float64{2, 3} {
			f := must(t, try(e.m.SetWaiting(e.ctx, e.runningFlow(t).ID, WaitExternalEvent("t", "c"))))
			requireEarlyResumed(t, e, f, want)
		}
		// Past the retention the last one is not delivered, nor counted.
		e.clock.Advance(time.Minute + time.Millisecond)
		if n := e.countEarly(t); n != 0 {
			t.Fatalf("%d kept events after the retention", n)
		}
		f := must(t, try(e.m.SetWaiting(e.ctx, e.runningFlow(t).ID, WaitExternalEvent("t", "c"))))
		if f.Status != StatusWaiting {
			t.Fatalf("an expired event resumed the flow")
		}
		// And the key goes by TTL.
		must(t, try(e.m.ResumeByCorrelation(e.ctx, "t", "other", nil)))
		if e.b.mini != nil {
			e.b.mini.FastForward(time.Minute + time.Second)
		} else {
			e.client.PExpire(e.ctx, e.store.keys.earlyPair(corrPrefix("t", "other")), 10*time.Millisecond)
			time.Sleep(50 * time.Millisecond)
		}
		if n := e.client.Exists(e.ctx, e.store.keys.earlyPair(corrPrefix("t", "other"))).Val(); n != 0 {
			t.Fatal("an expired early-event list is still there")
		}
		requireVerifyClean(t, e.m)
	}, WithEarlyEvents(time.Minute, 3))
}

func TestEarlyEventsOff(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := e.runningFlow(t)
		must(t, try(e.m.TryResumeExternal(e.ctx, f.ID, "mail", "m-1", nil)))
		must(t, try(e.m.ResumeByCorrelation(e.ctx, "mail", "m-1", nil)))
		w := must(t, try(e.m.SetWaiting(e.ctx, f.ID, WaitExternalEvent("mail", "m-1"))))
		if w.Status != StatusWaiting || e.countEarly(t) != 0 {
			t.Fatalf("early events off: flow %s, %d kept", w.Status, e.countEarly(t))
		}
	}, WithEarlyEvents(0, 0))
	_, err := NewRedisStore(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), WithEarlyEvents(-time.Second, 1))
	wantErr(t, err, ErrInvalidData)
	_, err = NewRedisStore(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), WithEarlyEvents(time.Hour, 0))
	wantErr(t, err, ErrInvalidData)
}

// TestResumeNullPayload: a JSON null payload is no payload, late or early,
// by flow id or by correlation, early events on or off.
func TestResumeNullPayload(t *testing.T) {
	for _, opt := range []StoreOption{WithEarlyEvents(0, 0), WithEarlyEvents(time.Hour, 10)} {
		forEachBackend(t, func(t *testing.T, e *env) {
			null := json.RawMessage("null")
			late := e.waitingFlow(t, WaitExternalEvent("t", "late"))
			f := must(t, try(e.m.TryResumeExternal(e.ctx, late.ID, "t", "late", null)))
			byCorr := e.waitingFlow(t, WaitExternalEvent("t", "corr"))
			must(t, try(e.m.ResumeByCorrelation(e.ctx, "t", "corr", []byte("null"))))
			for _, id := range []uuid.UUID{f.ID, byCorr.ID} {
				g := must(t, try(e.m.Get(e.ctx, id)))
				if _, has := stateOf(t, g)["resume_event"]; has || g.Status != StatusRunning {
					t.Fatalf("flow %s: %s, state %s", id, g.Status, g.State)
				}
				ev := must(t, try(e.m.ListEvents(e.ctx, id, 1)))[0]
				if ev.Kind != EventResumed || string(ev.Payload) != `{"state_patch":null}` {
					t.Fatalf("event %s %s", ev.Kind, ev.Payload)
				}
			}
			if !e.store.early.on() {
				return
			}
			early := e.runningFlow(t)
			must(t, try(e.m.TryResumeExternal(e.ctx, early.ID, "t", "early", null)))
			requireEarlyResumed(t, e, must(t, try(e.m.SetWaiting(e.ctx, early.ID, WaitExternalEvent("t", "early")))), nil)
		}, opt)
	}
}

// TestEarlyEventClaimRedriven: a claim whose owner died is finished by
// the tick: delivered when its flow still waits, else handed to another
// waiter; a late delivery by the first owner changes nothing.
func TestEarlyEventClaimRedriven(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		cp := corrPrefix("t", "c")
		must(t, try(e.m.ResumeByCorrelation(e.ctx, "t", "c", "one")))
		a := e.runningFlow(t)
		// a's SetWaiting, dying after its take: the wait, then the claim.
		must(t, try(e.m.store.transition(e.ctx, transitionReq{
			id: a.ID, to: StatusWaiting, kind: EventWaiting, payload: json.RawMessage(`{}`),
			wait: must(t, try(waitFromAny(a.ID, WaitExternalEvent("t", "c")))),
		})))
		eventID, payload, ok, err := e.store.takeEarly(e.ctx, a.ID, cp, "", newEventID())
		if err != nil || !ok {
			t.Fatalf("take: %v %v", ok, err)
		}
		eng := e.engine()
		if rep := eng.TickAt(e.ctx, e.clock.Now()); rep.EarlyRedriven != 0 {
			t.Fatalf("a claim not yet due was re-driven: %+v", rep)
		}
		e.clock.Advance(earlyClaimTimeout)
		rep := eng.TickAt(e.ctx, e.clock.Now())
		if rep.EarlyRedriven != 1 || rep.Err != nil {
			t.Fatalf("tick %+v", rep)
		}
		requireEarlyResumed(t, e, must(t, try(e.m.Get(e.ctx, a.ID))), "one")
		// The first owner wakes up: same decision, nothing written.
		before := e.dump()
		g, outcome, err := e.store.deliver(e.ctx, a.ID, cp, eventID, payload, "resume", false)
		if err != nil || outcome != earlySeen || g.Status != StatusRunning {
			t.Fatalf("late delivery: %v %s %v", g, outcome, err)
		}
		if back, err := e.store.settleEarly(e.ctx, cp, eventID, outcome, ""); back || err != nil {
			t.Fatalf("late settle: %v %v", back, err)
		}
		if after := e.dump(); !reflect.DeepEqual(before, after) {
			t.Fatal("a late delivery changed the flow space")
		}

		// Refused: the claimer's flow left its wait; the event goes to b.
		must(t, try(e.m.ResumeByCorrelation(e.ctx, "t", "c", "two")))
		c := e.runningFlow(t)
		must(t, try(e.m.store.transition(e.ctx, transitionReq{
			id: c.ID, to: StatusWaiting, kind: EventWaiting, payload: json.RawMessage(`{}`),
			wait: must(t, try(waitFromAny(c.ID, WaitExternalEvent("t", "c")))),
		})))
		if _, _, ok, err := e.store.takeEarly(e.ctx, c.ID, cp, "", newEventID()); err != nil || !ok {
			t.Fatalf("take: %v %v", ok, err)
		}
		must(t, try(e.m.Cancel(e.ctx, c.ID)))
		b := e.waitingFlow(t, WaitExternalEvent("t", "c")) // found nothing: claimed
		if b.Status != StatusWaiting {
			t.Fatal("b took a claimed event")
		}
		e.clock.Advance(earlyClaimTimeout)
		if rep := eng.TickAt(e.ctx, e.clock.Now()); rep.EarlyRedriven != 1 || rep.Err != nil {
			t.Fatalf("tick %+v", rep)
		}
		if g := must(t, try(e.m.Get(e.ctx, b.ID))); g.Status != StatusRunning || stateOf(t, g)["resume_event"] != "two" {
			t.Fatalf("b: %s %s", g.Status, g.State)
		}
		requireVerifyClean(t, e.m)
	})
}

// TestEarlyEventRace: events are published (by correlation, through the
// bridge, and by flow id; most pairs have one waiter, a quarter of the
// flows share one pair) while the flows that wait for them call
// SetWaiting, from many goroutines: every event resumes exactly one flow,
// every flow exactly one event.
func TestEarlyEventRace(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		const n = 64 // flows, and events: a quarter of each kind
		flows := make([]*Flow, n)
		for i := range flows {
			flows[i] = e.runningFlow(t)
		}
		eng := e.engine(WithBridgeBlock(20 * time.Millisecond))
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		bridgeDone := make(chan error, 1)
		go func() { bridgeDone <- eng.RunResumeBridge(ctx) }()

		var wg sync.WaitGroup
		errs := make(chan error, 2*n)
		start := make(chan struct{})
		// Each side starts after a random pause, so events come before,
		// during and after the waits.
		jitter := func() { <-start; time.Sleep(rand.N(20 * time.Millisecond)) }
		for i := 0; i < n; i++ {
			wg.Add(2)
			go func(i int) { // the waiter
				defer wg.Done()
				jitter()
				corr := fmt.Sprintf("own-%d", i)
				if i%4 == 3 {
					corr = "shared"
				}
				if _, err := e.m.SetWaiting(e.ctx, flows[i].ID, WaitExternalEvent("race", corr)); err != nil {
					errs <- fmt.Errorf("wait %d: %w", i, err)
				}
			}(i)
			go func(i int) { // the event
				defer wg.Done()
				jitter()
				var err error
				own := fmt.Sprintf("own-%d", i)
				switch i % 4 {
				case 0:
					_, err = e.m.ResumeByCorrelation(e.ctx, "race", own, i)
				case 1:
					err = e.m.PublishResume(e.ctx, ResumeRequest{Topic: "race", CorrelationID: own, Payload: i})
				case 2:
					_, err = e.m.TryResumeExternal(e.ctx, flows[i].ID, "race", own, i)
				case 3:
					_, err = e.m.ResumeByCorrelation(e.ctx, "race", "shared", i)
				}
				if err != nil {
					errs <- fmt.Errorf("event %d: %w", i, err)
				}
			}(i)
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		var got []int
		for {
			got = got[:0]
			for _, f := range flows {
				g := must(t, try(e.m.Get(e.ctx, f.ID)))
				if g.Status == StatusRunning {
					if v, ok := stateOf(t, g)["resume_event"].(float64); ok {
						got = append(got, int(v))
					}
				}
			}
			if len(got) == n || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err := <-bridgeDone; !errors.Is(err, context.Canceled) {
			t.Fatalf("bridge: %v", err)
		}
		sort.Ints(got)
		for i := range got {
			if got[i] != i {
				t.Fatalf("events used by the flows: %v (want each of 0..%d once); bridge %+v, kept %d",
					got, n-1, eng.BridgeStats(), e.countEarly(t))
			}
		}
		if len(got) != n {
			t.Fatalf("%d of %d flows resumed: events %v; kept %d", len(got), n, got, e.countEarly(t))
		}
		for _, f := range flows {
			kinds := eventKinds(t, e, f.ID)
			if countKind(kinds, EventResumed) != 1 {
				t.Fatalf("flow %s: events %v", f.ID, kinds)
			}
		}
		if k := e.countEarly(t); k != 0 {
			t.Fatalf("%d events still kept", k)
		}
		for shard := 0; shard < e.store.Shards(); shard++ {
			if c := e.client.HLen(e.ctx, e.store.keys.claims(shard)).Val(); c != 0 {
				t.Fatalf("%d claims left on shard %d", c, shard)
			}
		}
		requireVerifyClean(t, e.m)
	})
}

// TestTakeEarlyEvent: a flow whose wait was stored but whose take never
// ran (SetWaiting failed in between) takes the kept event on retry.
func TestTakeEarlyEvent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		must(t, try(e.m.ResumeByCorrelation(e.ctx, "t", "c", "late")))
		f := e.runningFlow(t)
		if g := must(t, try(e.m.TakeEarlyEvent(e.ctx, f.ID))); g.Status != StatusRunning || g.Revision != f.Revision {
			t.Fatalf("a running flow changed: %+v", g)
		}
		must(t, try(e.m.store.transition(e.ctx, transitionReq{
			id: f.ID, to: StatusWaiting, kind: EventWaiting, payload: json.RawMessage(`{}`),
			wait: must(t, try(waitFromAny(f.ID, WaitExternalEvent("t", "c")))),
		})))
		requireEarlyResumed(t, e, must(t, try(e.m.TakeEarlyEvent(e.ctx, f.ID))), "late")
		_, err := e.m.TakeEarlyEvent(e.ctx, uuid.New())
		wantErr(t, err, ErrNotFound)
	})
}

// TestEarlyEventRaceWithCancels: on one pair, events are published while
// flows start waiting and others are cancelled mid-wait (a claimed event
// is then refused and handed on): no event is applied twice, every event
// is applied or still kept, and none is kept while a flow still waits.
func TestEarlyEventRaceWithCancels(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		const events, waiters, cancelled = 24, 16, 16
		flows := make([]*Flow, waiters+cancelled)
		for i := range flows {
			flows[i] = e.runningFlow(t)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 2*len(flows)+events)
		start := make(chan struct{})
		jitter := func() { <-start; time.Sleep(rand.N(20 * time.Millisecond)) }
		for i := range flows {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				jitter()
				if _, err := e.m.SetWaiting(e.ctx, flows[i].ID, WaitExternalEvent("churn", "c")); err != nil {
					errs <- fmt.Errorf("wait %d: %w", i, err)
				}
				if i >= waiters {
					time.Sleep(rand.N(2 * time.Millisecond))
					if _, err := e.m.Cancel(e.ctx, flows[i].ID); err != nil {
						errs <- fmt.Errorf("cancel %d: %w", i, err)
					}
				}
			}(i)
		}
		for i := 0; i < events; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				jitter()
				if _, err := e.m.ResumeByCorrelation(e.ctx, "churn", "c", i); err != nil {
					errs <- fmt.Errorf("event %d: %w", i, err)
				}
			}(i)
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		used := map[int]uuid.UUID{}
		stillWaiting := 0
		for _, f := range flows {
			g := must(t, try(e.m.Get(e.ctx, f.ID)))
			if g.Status == StatusWaiting {
				stillWaiting++
			}
			v, ok := stateOf(t, g)["resume_event"].(float64)
			if !ok {
				continue
			}
			if other, dup := used[int(v)]; dup {
				t.Fatalf("event %d used by %s and %s", int(v), other, f.ID)
			}
			used[int(v)] = f.ID
			if n := countKind(eventKinds(t, e, f.ID), EventResumed); n != 1 {
				t.Fatalf("flow %s resumed %d times", f.ID, n)
			}
		}
		kept := e.countEarly(t)
		if len(used)+kept != events {
			t.Fatalf("%d events used + %d kept, want %d", len(used), kept, events)
		}
		if kept > 0 && stillWaiting > 0 {
			t.Fatalf("%d events kept while %d flows wait for them", kept, stillWaiting)
		}
		requireVerifyClean(t, e.m)
	})
}

// TestEarlyEventLateKeepResend: a keep re-sent late (its reply was lost
// and the reconnect took long), after a flow used the event, does not
// keep it again, whatever the event's origin; the memory of used events
// is bounded by its cap and its time.
func TestEarlyEventLateKeepResend(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		cp := corrPrefix("t", "late")
		id := newEventID()
		if _, err := e.store.keepEarly(e.ctx, cp, id, json.RawMessage(`"p"`)); err != nil {
			t.Fatal(err)
		}
		a := e.runningFlow(t)
		requireEarlyResumed(t, e, must(t, try(e.m.SetWaiting(e.ctx, a.ID, WaitExternalEvent("t", "late")))), "p")
		// The re-sent keep arrives.
		if _, err := e.store.keepEarly(e.ctx, cp, id, json.RawMessage(`"p"`)); err != nil {
			t.Fatal(err)
		}
		if n := e.countEarly(t); n != 0 {
			t.Fatalf("a late re-sent keep kept a used event again (%d kept)", n)
		}
		b := e.waitingFlow(t, WaitExternalEvent("t", "late"))
		if b.Status != StatusWaiting {
			t.Fatal("a used event resumed a second flow")
		}
		// Bounded: the cap keeps the newest ids; past the memory's time
		// the set goes.
		for i := 0; i < 5; i++ {
			if fs := must(t, try(e.m.ResumeByCorrelation(e.ctx, "t", "late", i))); len(fs) != 1 {
				t.Fatalf("event %d resumed %d flows", i, len(fs))
			}
			e.waitingFlow(t, WaitExternalEvent("t", "late"))
		}
		r := e.store.keys.rendezvous(cp)
		if n := e.client.ZCard(e.ctx, e.store.keys.used(r)).Val(); n != 3 {
			t.Fatalf("%d used ids remembered, want the cap of 3", n)
		}
		if ttl := e.client.PTTL(e.ctx, e.store.keys.used(r)).Val(); ttl <= 0 || ttl > time.Hour {
			t.Fatalf("the used ids live %s, want at most the memory's hour", ttl)
		}
	}, WithResumeIDMemory(time.Hour, 3))
}

// TestResumeByCorrelationCancelPendingWaiter: a waiter whose cancel is
// pending is no waiter: the event is kept, without an error, in a
// bounded number of commands, and the next flow to wait takes it.
func TestResumeByCorrelationCancelPendingWaiter(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		w := e.waitingFlow(t, WaitExternalEvent("t", "c"))
		must(t, try(e.m.RequestCancel(e.ctx, w.ID)))
		cmds := &commandCounter{}
		c := e.b.client(t)
		c.AddHook(cmds)
		m := NewManager(e.reopenStore(c))
		if err := m.store.LoadScripts(e.ctx); err != nil {
			t.Fatal(err)
		}
		cmds.reset()
		fs, err := m.ResumeByCorrelation(e.ctx, "t", "c", "p")
		if err != nil || len(fs) != 0 {
			t.Fatalf("resume with a cancel-pending waiter: %d flows, %v", len(fs), err)
		}
		// keep, scan, take, deliver, settle, and one more scan.
		if n, max := cmds.count(), 2*DefaultShards+8; n > max {
			t.Fatalf("%d commands, want at most %d", n, max)
		}
		if n := e.countEarly(t); n != 1 {
			t.Fatalf("%d events kept, want 1", n)
		}
		e.engine().TickAt(e.ctx, e.clock.Now())
		if g := must(t, try(e.m.Get(e.ctx, w.ID))); g.Status != StatusCancelled {
			t.Fatalf("the tick left the flow %s", g.Status)
		}
		requireEarlyResumed(t, e, e.waitingFlow(t, WaitExternalEvent("t", "c")), "p")
		requireVerifyClean(t, e.m)
	})
}

// resumeWithID is TryResumeExternal with the event's id, as the bridge
// names it.
func (e *env) resumeWithID(id uuid.UUID, topic, corr string, payload any, eventID string) (*Flow, error) {
	ev, err := e.m.newEvent(&id, topic, corr, payload, eventID, mutation{})
	if err != nil {
		return nil, err
	}
	fs, _, err := e.m.resume(e.ctx, ev)
	if len(fs) == 0 {
		return nil, err
	}
	return fs[0], err
}

// resumeByCorrWithID is ResumeByCorrelation with the event's id.
func (e *env) resumeByCorrWithID(topic, corr string, payload any, eventID string) ([]*Flow, error) {
	fs, _, err := e.resumeByCorrFresh(topic, corr, payload, eventID)
	return fs, err
}

// resumeByCorrFresh is resumeByCorrWithID that also returns how many
// flows this call resumed.
func (e *env) resumeByCorrFresh(topic, corr string, payload any, eventID string) ([]*Flow, int, error) {
	ev, err := e.m.newEvent(nil, topic, corr, payload, eventID, mutation{})
	if err != nil {
		return nil, 0, err
	}
	return e.m.resume(e.ctx, ev)
}

// TestFlowIDEventUsedOnceLate: an event addressed to a flow id that the
// flow used, resumed live or taken from its list by SetWaiting, is
// remembered on the flow's shard past the flow's own records (its last
// 16 events, its ring of bridge calls): the same request stored on the
// stream again and handled after 17 more bridge events of the flow
// resumes no later wait and is not kept. The memory is bounded by
// WithResumeIDMemory.
func TestFlowIDEventUsedOnceLate(t *testing.T) {
	const more = 17 // past the flow's records of 16 events
	t.Run("late copy", func(t *testing.T) {
		forEachBackend(t, func(t *testing.T, e *env) {
			ctx := e.ctx
			stream := e.store.keys.bridge()
			eng := e.engine(WithBridgeBlock(time.Millisecond))
			var pruned []uuid.UUID
			var members []string
			for _, live := range []bool{true, false} {
				var f *Flow
				if live {
					f = e.waitingFlow(t, WaitExternalEvent("pay", "o"))
				} else {
					f = e.runningFlow(t)
				}
				req := ResumeRequest{ID: fmt.Sprintf("late-%v", live), FlowID: f.ID, Topic: "pay", CorrelationID: "o", Payload: "first"}
				must(t, try(0, e.m.PublishResume(ctx, req)))
				drainBridge(t, e, eng)
				if !live {
					if n := e.countEarly(t); n != 1 {
						t.Fatalf("%d kept events, want the request kept", n)
					}
					requireEarlyResumed(t, e, must(t, try(e.m.SetWaiting(ctx, f.ID, WaitExternalEvent("pay", "o")))), "first")
				}
				if got := must(t, try(e.m.Get(ctx, f.ID))); got.Status != StatusRunning {
					t.Fatalf("the request did not resume the flow: %s", got.Status)
				}
				// The flow goes on: more waits, each met by a bridge
				// request of its own.
				for i := 0; i < more; i++ {
					must(t, try(e.m.SetWaiting(ctx, f.ID, WaitExternalEvent("pay", "o"))))
					next := ResumeRequest{ID: fmt.Sprintf("next-%v-%d", live, i), FlowID: f.ID, Topic: "pay", CorrelationID: "o", Payload: i}
					must(t, try(0, e.m.PublishResume(ctx, next)))
					drainBridge(t, e, eng)
				}
				// The first request, stored on the stream again (past the
				// publisher's memory), handled while the flow runs: not
				// kept.
				body := must(t, try(json.Marshal(bridgeMessage{ID: req.ID, FlowID: f.ID.String(), Topic: req.Topic, CorrelationID: req.CorrelationID, Payload: json.RawMessage(`"first"`)})))
				e.client.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"body", string(body)}})
				drainBridge(t, e, eng)
				if n := e.countEarly(t); n != 0 {
					t.Fatalf("a used request handled again late was kept: %d kept events", n)
				}
				w := must(t, try(e.m.SetWaiting(ctx, f.ID, WaitExternalEvent("pay", "o"))))
				if w.Status != StatusWaiting {
					t.Fatalf("the wait was met by a used request: %s", w.Status)
				}
				// And handled while the flow waits: no resume.
				e.client.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"body", string(body)}})
				drainBridge(t, e, eng)
				if got := must(t, try(e.m.Get(ctx, f.ID))); got.Status != StatusWaiting || got.Revision != w.Revision {
					t.Fatalf("a used request handled again late resumed the flow: %s rev %d (was %d)", got.Status, got.Revision, w.Revision)
				}
				if n := e.countEarly(t); n != 0 {
					t.Fatalf("a used request handled again late was kept: %d kept events", n)
				}
				must(t, try(e.m.Cancel(ctx, f.ID)))
				pruned = append(pruned, f.ID)
				members = append(members, f.ID.String()+" "+requestEventPrefix+req.ID)
			}
			requireVerifyClean(t, e.m)
			// The memory is the shard's, not the flow's: a prune leaves
			// it (a flow made again under the same id still refuses the
			// request), and it is on the flow's own shard (one hash slot).
			e.clock.Advance(2 * time.Hour)
			if n := must(t, try(e.m.PruneTerminalFlows(ctx, time.Hour))); n != len(pruned) {
				t.Fatalf("pruned %d flows, want %d", n, len(pruned))
			}
			for i, id := range pruned {
				if s, err := e.client.ZScore(ctx, e.store.keys.used(e.store.keys.shardOf(id)), members[i]).Result(); err != nil || s <= 0 {
					t.Fatalf("the used event is not remembered on the flow's shard after the prune: %v %v", s, err)
				}
			}
			requireVerifyClean(t, e.m)
		}, WithResumeIDMemory(24*time.Hour, 1000))
	})
	t.Run("bounded", func(t *testing.T) {
		forEachBackend(t, func(t *testing.T, e *env) {
			f := e.runningFlow(t)
			for i := 0; i < 5; i++ {
				f = must(t, try(e.m.SetWaiting(e.ctx, f.ID, WaitExternalEvent("t", "c"))))
				if g := must(t, try(e.resumeWithID(f.ID, "t", "c", i, fmt.Sprintf("e%d", i)))); g == nil {
					t.Fatalf("event %d did not resume the flow", i)
				}
			}
			used := e.store.keys.used(e.store.keys.shardOf(f.ID))
			if n := e.client.ZCard(e.ctx, used).Val(); n != 3 {
				t.Fatalf("%d used events remembered on the flow's shard, want the cap of 3", n)
			}
			if ttl := e.client.PTTL(e.ctx, used).Val(); ttl <= 0 || ttl > time.Hour {
				t.Fatalf("the used events live %s, want at most the memory's hour", ttl)
			}
		}, WithResumeIDMemory(time.Hour, 3))
	})
}

// TestEarlyEventHandledAgainFinishesItsClaim: a handling of an event cut
// between its take and its delivery (a failover broke the connection)
// leaves the event in a claim; the same event handled again (the bridge
// reads its pending message again) finishes that claim in the same call,
// so the waiting flow resumes now, not when the claim falls due (30 s)
// and an engine's tick re-drives it. Found by TestSentinelFailover.
func TestEarlyEventHandledAgainFinishesItsClaim(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		w := e.waitingFlow(t, WaitExternalEvent("t", "cut"))
		cp := corrPrefix("t", "cut")
		id := newEventID()
		if _, err := e.store.keepEarly(e.ctx, cp, id, json.RawMessage(`"p"`)); err != nil {
			t.Fatal(err)
		}
		if _, _, ok, err := e.store.takeEarly(e.ctx, w.ID, cp, id, newEventID()); err != nil || !ok {
			t.Fatalf("take: ok %v, %v", ok, err)
		}
		// The first handling stops here. The second:
		fs, fresh, err := e.resumeByCorrFresh("t", "cut", "p", id)
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) != 1 || fs[0].ID != w.ID || fresh != 1 {
			t.Fatalf("handled again: resumed %d flows (fresh %d), want the waiter", len(fs), fresh)
		}
		resumed := must(t, try(e.m.Get(e.ctx, w.ID)))
		requireEarlyResumed(t, e, resumed, "p")
		// And a third handling applies nothing more.
		fs, fresh, err = e.resumeByCorrFresh("t", "cut", "p", id)
		if err != nil || fresh != 0 {
			t.Fatalf("a third handling: fresh %d, %v", fresh, err)
		}
		if n := e.countEarly(t); n != 0 {
			t.Fatalf("%d events kept after the claim was finished", n)
		}
		if got := must(t, try(e.m.Get(e.ctx, w.ID))); got.Revision != resumed.Revision {
			t.Fatalf("the third handling moved the flow from revision %d to %d", resumed.Revision, got.Revision)
		}
	})
}
