package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (e *env) engine(opts ...EngineOption) *WaitEngine {
	return NewWaitEngine(e.m, append([]EngineOption{WithLogger(quietLogger())}, opts...)...)
}

// waitingFlow creates a running flow and puts it on wait.
func (e *env) waitingFlow(t testing.TB, wait any) *Flow {
	t.Helper()
	f := must(t, try(e.m.CreateMirrored(e.ctx, seedInput())))
	return must(t, try(e.m.SetWaiting(e.ctx, f.ID, wait)))
}

func eventKinds(t testing.TB, e *env, id uuid.UUID) []string {
	t.Helper()
	var out []string
	for _, ev := range must(t, try(e.m.ListEvents(e.ctx, id, 1000))) {
		out = append(out, ev.Kind)
	}
	return out
}

func TestWaitConditionRoundTrip(t *testing.T) {
	at := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		w    WaitCondition
		json string
	}{
		{WaitTimer(at), `{"kind":"timer","at":"2030-05-01T12:00:00Z"}`},
		{WaitExternalEvent("mail", "m-1"), `{"kind":"external_event","topic":"mail","correlation_id":"m-1"}`},
		{WaitManual(), `{"kind":"manual"}`},
	}
	for _, c := range cases {
		b, err := json.Marshal(c.w)
		if err != nil || string(b) != c.json {
			t.Fatalf("marshal %v = %s, %v", c.w, b, err)
		}
		back, err := ParseWaitCondition(b)
		if err != nil || !reflect.DeepEqual(back, c.w) {
			t.Fatalf("parse %s = %+v, %v", b, back, err)
		}
	}
	for _, bad := range []string{
		``, `null`, `[]`, `"timer"`, `{}`, `{"kind":"sleep"}`, `{"kind":"timer"}`,
		`{"kind":"timer","at":"tomorrow"}`, `{"kind":"timer","at":5}`,
		`{"kind":"external_event","topic":"t"}`, `{"kind":"external_event","topic":"","correlation_id":"c"}`,
		`{"kind":"external_event","topic":" ","correlation_id":"c"}`, `{"kind":`,
	} {
		if _, err := ParseWaitCondition(json.RawMessage(bad)); !errors.Is(err, ErrInvalidData) {
			t.Errorf("ParseWaitCondition(%s) = %v", bad, err)
		}
	}
}

func TestTickTimers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		now := e.clock.Now()
		f := e.waitingFlow(t, WaitTimer(now.Add(time.Hour)))
		rep := eng.TickAt(e.ctx, now)
		if rep.Scanned != 1 || rep.Resumed != 0 || rep.StillWaiting != 1 || rep.Errors != 0 {
			t.Fatalf("future timer: %+v", rep)
		}
		rep = eng.TickAt(e.ctx, now.Add(time.Hour))
		if rep.Scanned != 1 || rep.Resumed != 1 || rep.StillWaiting != 0 || rep.Errors != 0 {
			t.Fatalf("due timer: %+v", rep)
		}
		got := must(t, try(e.m.Get(e.ctx, f.ID)))
		if got.Status != StatusRunning || got.Wait != nil || got.Revision != f.Revision+1 {
			t.Fatalf("resumed flow: %+v", got)
		}
		ev := must(t, try(e.m.ListEvents(e.ctx, f.ID, 1)))[0]
		if ev.Kind != EventResumed || string(ev.Payload) != `{"state_patch":null}` {
			t.Fatalf("event %+v", ev)
		}
		rep = eng.TickAt(e.ctx, now.Add(2*time.Hour))
		if rep.Resumed != 0 || rep.Scanned != 0 {
			t.Fatalf("second tick: %+v", rep)
		}
	})
}

func TestTickLeavesManualAndExternal(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		m := e.waitingFlow(t, WaitManual())
		x := e.waitingFlow(t, WaitExternalEvent("mail", "m-1"))
		rep := eng.TickAt(e.ctx, e.clock.Now().Add(365*24*time.Hour))
		if rep.Scanned != 2 || rep.StillWaiting != 2 || rep.Resumed != 0 {
			t.Fatalf("report %+v", rep)
		}
		for _, id := range []uuid.UUID{m.ID, x.ID} {
			if got := must(t, try(e.m.Get(e.ctx, id))); got.Status != StatusWaiting {
				t.Fatalf("flow %s is %s", id, got.Status)
			}
		}
	})
}

func TestTickCancelsCancelRequested(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		now := e.clock.Now()
		a := e.waitingFlow(t, WaitManual())
		b := e.waitingFlow(t, WaitTimer(now.Add(-time.Minute))) // due, but cancel wins
		c := e.waitingFlow(t, WaitTimer(now.Add(time.Hour)))
		for _, f := range []*Flow{a, b, c} {
			must(t, try(e.m.RequestCancel(e.ctx, f.ID)))
		}
		rep := eng.TickAt(e.ctx, now)
		if rep.Cancelled != 3 || rep.Resumed != 0 || rep.StillWaiting != 0 || rep.Scanned != 3 {
			t.Fatalf("report %+v", rep)
		}
		for _, f := range []*Flow{a, b, c} {
			got := must(t, try(e.m.Get(e.ctx, f.ID)))
			if got.Status != StatusCancelled || got.Wait != nil {
				t.Fatalf("flow %+v", got)
			}
			if k := eventKinds(t, e, f.ID); k[0] != EventCancelled {
				t.Fatalf("events %v", k)
			}
		}
		for shard := 0; shard < e.store.Shards(); shard++ {
			if n := e.client.SCard(e.ctx, e.store.keys.cancelWait(shard)).Val(); n != 0 {
				t.Fatalf("cancelwait left %d", n)
			}
			if n := e.client.ZCard(e.ctx, e.store.keys.timers(shard)).Val(); n != 0 {
				t.Fatalf("timers left %d", n)
			}
		}
	})
}

func TestTryResumeExternal(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		f := e.waitingFlow(t, WaitExternalEvent("mail", "m-1"))
		for _, c := range []struct{ topic, corr string }{{"mail", "m-2"}, {"sms", "m-1"}, {"mai", "lm-1"}} {
			got, err := eng.TryResumeExternal(e.ctx, f.ID, c.topic, c.corr, nil)
			if got != nil || err != nil {
				t.Fatalf("mismatch %v resumed: %v %v", c, got, err)
			}
		}
		if got, err := eng.TryResumeExternal(e.ctx, uuid.New(), "mail", "m-1", nil); got != nil || err != nil {
			t.Fatalf("unknown flow: %v %v", got, err)
		}
		running := must(t, try(e.m.CreateMirrored(e.ctx, seedInput())))
		if got, err := eng.TryResumeExternal(e.ctx, running.ID, "mail", "m-1", nil); got != nil || err != nil {
			t.Fatalf("running flow: %v %v", got, err)
		}
		got, err := eng.TryResumeExternal(e.ctx, f.ID, "mail", "m-1", map[string]string{"from": "bob"})
		if err != nil || got == nil {
			t.Fatalf("match: %v %v", got, err)
		}
		if got.Status != StatusRunning || got.Wait != nil {
			t.Fatalf("resumed %+v", got)
		}
		ev, _ := stateOf(t, got)["resume_event"].(map[string]any)
		if ev["from"] != "bob" {
			t.Fatalf("state %s", got.State)
		}
		// Twice is harmless.
		if again, err := eng.TryResumeExternal(e.ctx, f.ID, "mail", "m-1", nil); again != nil || err != nil {
			t.Fatalf("second resume: %v %v", again, err)
		}
		if n := countKind(eventKinds(t, e, f.ID), EventResumed); n != 1 {
			t.Fatalf("%d resumed events", n)
		}
	})
}

func countKind(kinds []string, k string) int {
	n := 0
	for _, x := range kinds {
		if x == k {
			n++
		}
	}
	return n
}

// TestResumeByCorrelation: with the mailbox off, an event resumes every
// flow waiting for it (mailbox_test.go has the mailbox's own rules).
func TestResumeByCorrelation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		var same []*Flow
		for i := 0; i < 5; i++ {
			same = append(same, e.waitingFlow(t, WaitExternalEvent("reply", "job-7")))
		}
		other := e.waitingFlow(t, WaitExternalEvent("reply", "job-77"))
		got := must(t, try(e.m.ResumeByCorrelation(e.ctx, "reply", "job-7", "done")))
		if len(got) != 5 {
			t.Fatalf("resumed %d", len(got))
		}
		for _, f := range same {
			if g := must(t, try(e.m.Get(e.ctx, f.ID))); g.Status != StatusRunning || stateOf(t, g)["resume_event"] != "done" {
				t.Fatalf("flow %+v", g)
			}
		}
		if g := must(t, try(e.m.Get(e.ctx, other.ID))); g.Status != StatusWaiting {
			t.Fatal("a flow with another correlation id was resumed")
		}
		if got := must(t, try(e.m.ResumeByCorrelation(e.ctx, "reply", "job-7", nil))); len(got) != 0 {
			t.Fatalf("second pass resumed %d", len(got))
		}
		// Leaving the wait by another path clears the correlation entry.
		must(t, try(e.m.Cancel(e.ctx, other.ID)))
		for shard := 0; shard < e.store.Shards(); shard++ {
			if n := e.client.ZCard(e.ctx, e.store.keys.corr(shard)).Val(); n != 0 {
				t.Fatalf("correlation entries left: %d", n)
			}
		}
	}, WithEarlyEvents(0, 0))
}

func TestTickSkipsUnreadableWait(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		now := e.clock.Now()
		bad := e.waitingFlow(t, WaitTimer(now.Add(-time.Second)))
		good := e.waitingFlow(t, WaitTimer(now.Add(-time.Second)))
		if err := e.client.HSet(e.ctx, e.store.keys.flow(bad.ID), "wait", "}garbage{").Err(); err != nil {
			t.Fatal(err)
		}
		rep := eng.TickAt(e.ctx, now)
		if rep.Resumed != 1 || rep.Errors != 1 || rep.StillWaiting != 1 {
			t.Fatalf("report %+v", rep)
		}
		if g := must(t, try(e.m.Get(e.ctx, good.ID))); g.Status != StatusRunning {
			t.Fatal("good flow not resumed")
		}
		// Reported once, not on every tick.
		if rep := eng.TickAt(e.ctx, now); rep.Errors != 0 {
			t.Fatalf("second tick %+v", rep)
		}
	})
}

// TestFleetResumesEachDueFlowOnce: four engines on four clients tick the
// same flow space at once; every due flow is resumed exactly once.
func TestFleetResumesEachDueFlowOnce(t *testing.T) {
	const due, notDue, engines = 2000, 50, 4
	forEachBackend(t, func(t *testing.T, e *env) {
		now := e.clock.Now()
		ids := fillWaiting(t, e, due, now.Add(-time.Minute))
		fillWaiting(t, e, notDue, now.Add(time.Hour))
		reports := make([]TickReport, engines)
		var wg sync.WaitGroup
		for i := 0; i < engines; i++ {
			eng := NewWaitEngine(NewManager(e.reopenStore(e.b.client(t))), WithLogger(quietLogger()), WithTickBatch(50))
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				reports[i] = eng.TickAt(e.ctx, now)
			}(i)
		}
		wg.Wait()
		sum := 0
		for _, r := range reports {
			if r.Errors != 0 {
				t.Fatalf("report with errors: %+v", r)
			}
			sum += r.Resumed
		}
		if sum != due {
			t.Fatalf("resumed %d in all, want %d (%+v)", sum, due, reports)
		}
		for _, id := range ids {
			if n := countKind(eventKinds(t, e, id), EventResumed); n != 1 {
				t.Fatalf("flow %s has %d resumed events", id, n)
			}
		}
		left := 0
		for shard := 0; shard < e.store.Shards(); shard++ {
			left += int(e.client.ZCount(e.ctx, e.store.keys.timers(shard), "-inf", fmt.Sprint(now.UnixMilli())).Val())
		}
		if left != 0 {
			t.Fatalf("%d due timers left", left)
		}
		if rep := NewWaitEngine(e.m, WithLogger(quietLogger())).TickAt(e.ctx, now); rep.StillWaiting != notDue || rep.Resumed != 0 {
			t.Fatalf("after: %+v", rep)
		}
	})
}

// fillWaiting creates n waiting flows with a timer at `at`, pipelining the
// manager's scripts for speed.
func fillWaiting(t testing.TB, e *env, n int, at time.Time) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, 0, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f, err := e.m.CreateMirrored(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})
			if err == nil {
				_, err = e.m.SetWaiting(e.ctx, f.ID, WaitTimer(at))
			}
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			ids = append(ids, f.ID)
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return ids
}

func TestRunStopsPromptly(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		ctx, cancel := context.WithCancel(e.ctx)
		done := make(chan error, 1)
		ticks := 0
		var mu sync.Mutex
		go func() {
			done <- eng.RunWithReports(ctx, 10*time.Millisecond, func(TickReport) { mu.Lock(); ticks++; mu.Unlock() })
		}()
		time.Sleep(60 * time.Millisecond)
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run returned %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Run did not stop within 2s of cancel")
		}
		mu.Lock()
		defer mu.Unlock()
		if ticks < 2 {
			t.Fatalf("only %d ticks", ticks)
		}
	})
}

func TestRunResumesDueTimer(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := e.waitingFlow(t, WaitTimer(e.clock.Now().Add(-time.Second)))
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		defer cancel()
		go func() { _ = e.engine().Run(ctx, 20*time.Millisecond) }()
		for ctx.Err() == nil {
			if g := must(t, try(e.m.Get(e.ctx, f.ID))); g.Status == StatusRunning {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatal("Run never resumed the due flow")
	})
}

func TestBridgeResumes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		byID := e.waitingFlow(t, WaitExternalEvent("webhook", "abc"))
		byCorr := e.waitingFlow(t, WaitExternalEvent("webhook", "def"))
		// Published before any engine runs: still handled.
		must(t, try(0, e.m.PublishResume(e.ctx, ResumeRequest{FlowID: byID.ID, Topic: "webhook", CorrelationID: "abc", Payload: map[string]int{"n": 1}})))
		must(t, try(0, e.m.PublishResume(e.ctx, ResumeRequest{Topic: "webhook", CorrelationID: "def"})))
		// Malformed messages are acknowledged and counted, never retried.
		e.client.XAdd(e.ctx, &redis.XAddArgs{Stream: e.store.keys.bridge(), Values: []any{"body", "not json"}})
		e.client.XAdd(e.ctx, &redis.XAddArgs{Stream: e.store.keys.bridge(), Values: []any{"other", "x"}})
		e.client.XAdd(e.ctx, &redis.XAddArgs{Stream: e.store.keys.bridge(), Values: []any{"body", `{"flow_id":"nope","topic":"a","correlation_id":"b"}`}})
		// A duplicate is harmless.
		must(t, try(0, e.m.PublishResume(e.ctx, ResumeRequest{FlowID: byID.ID, Topic: "webhook", CorrelationID: "abc"})))

		eng := e.engine(WithBridgeBlock(20 * time.Millisecond))
		ctx, cancel := context.WithCancel(e.ctx)
		done := make(chan error, 1)
		go func() { done <- eng.RunResumeBridge(ctx) }()
		deadline := time.Now().Add(5 * time.Second)
		for eng.BridgeStats().Handled < 6 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("bridge returned %v", err)
		}
		st := eng.BridgeStats()
		if st.Handled != 6 || st.Resumed != 2 || st.Malformed != 3 {
			t.Fatalf("stats %+v", st)
		}
		for _, f := range []*Flow{byID, byCorr} {
			if g := must(t, try(e.m.Get(e.ctx, f.ID))); g.Status != StatusRunning {
				t.Fatalf("flow %s not resumed", f.ID)
			}
		}
		if got := stateOf(t, must(t, try(e.m.Get(e.ctx, byID.ID))))["resume_event"]; !reflect.DeepEqual(got, map[string]any{"n": float64(1)}) {
			t.Fatalf("resume_event %v", got)
		}
		if n := e.client.XLen(e.ctx, e.store.keys.bridge()).Val(); n != 0 {
			t.Fatalf("stream keeps %d handled messages", n)
		}
		if cs, err := e.client.XInfoConsumers(e.ctx, e.store.keys.bridge(), DefaultBridgeGroup).Result(); err != nil || len(cs) != 0 {
			t.Fatalf("the stopped engine left its consumer: %v %v", cs, err)
		}
		err := e.m.PublishResume(e.ctx, ResumeRequest{Topic: "", CorrelationID: "x"})
		wantErr(t, err, ErrInvalidData)
	})
}

// TestBridgeClaimsFromDeadConsumer: a consumer reads a message and dies
// before acknowledging it; a live engine claims it after the timeout.
func TestBridgeClaimsFromDeadConsumer(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := e.waitingFlow(t, WaitExternalEvent("webhook", "abc"))
		stream := e.store.keys.bridge()
		must(t, try(0, e.m.PublishResume(e.ctx, ResumeRequest{FlowID: f.ID, Topic: "webhook", CorrelationID: "abc"})))
		// The dead consumer: joins the group, reads, never acknowledges.
		dead := e.b.client(t)
		if err := dead.XGroupCreateMkStream(e.ctx, stream, DefaultBridgeGroup, "0").Err(); err != nil {
			t.Fatal(err)
		}
		res := must(t, try(dead.XReadGroup(e.ctx, &redis.XReadGroupArgs{
			Group: DefaultBridgeGroup, Consumer: "dead", Streams: []string{stream, ">"}, Count: 10, Block: -1,
		}).Result()))
		if len(res) != 1 || len(res[0].Messages) != 1 {
			t.Fatalf("dead consumer read %v", res)
		}
		_ = dead.Close()

		claimAfter := 150 * time.Millisecond
		if e.b.mini != nil {
			// miniredis's idle times follow its own clock.
			e.b.mini.FastForward(time.Second)
		} else {
			time.Sleep(claimAfter)
		}
		eng := e.engine(WithClaimAfter(claimAfter), WithBridgeBlock(20*time.Millisecond))
		ctx, cancel := context.WithCancel(e.ctx)
		done := make(chan error, 1)
		go func() { done <- eng.RunResumeBridge(ctx) }()
		deadline := time.Now().Add(5 * time.Second)
		for eng.BridgeStats().Handled < 1 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done
		if st := eng.BridgeStats(); st.Claimed != 1 || st.Resumed != 1 {
			t.Fatalf("stats %+v", st)
		}
		if g := must(t, try(e.m.Get(e.ctx, f.ID))); g.Status != StatusRunning {
			t.Fatal("claimed message did not resume the flow")
		}
		pending := must(t, try(e.client.XPending(e.ctx, stream, DefaultBridgeGroup).Result()))
		if pending.Count != 0 {
			t.Fatalf("%d messages still pending", pending.Count)
		}
	})
}
