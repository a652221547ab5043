package taskflow

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func fixedRand(r float64) func() float64 { return func() float64 { return r } }

func TestRetryPolicyBackoff(t *testing.T) {
	p := RetryPolicy{Base: time.Second, Cap: 5 * time.Second, Rand: fixedRand(0)}
	for attempt, want := range map[int]time.Duration{0: 500 * time.Millisecond, 1: 500 * time.Millisecond, 2: time.Second, 3: 2 * time.Second, 4: 2500 * time.Millisecond, 60: 2500 * time.Millisecond} {
		if got := p.Backoff(attempt); got != want {
			t.Errorf("jitter 0, attempt %d: %s, want %s", attempt, got, want)
		}
	}
	p.Rand = fixedRand(0.5)
	if got := p.Backoff(3); got != 3*time.Second {
		t.Errorf("jitter 0.5, attempt 3: %s, want 3s", got)
	}
	p.Rand = fixedRand(0.999999)
	if got := p.Backoff(3); got <= 3999*time.Millisecond || got >= 4*time.Second {
		t.Errorf("jitter ~1, attempt 3: %s, want just under 4s", got)
	}
	p.Rand = fixedRand(7) // out of range: treated as 0
	if got := p.Backoff(1); got != 500*time.Millisecond {
		t.Errorf("bad jitter: %s", got)
	}
	// The zero policy is the default one; the jitter stays in bounds.
	var def RetryPolicy
	for i := 0; i < 100; i++ {
		if got := def.Backoff(1); got < defaultRetryBase/2 || got >= defaultRetryBase {
			t.Fatalf("default backoff %s out of [%s, %s)", got, defaultRetryBase/2, defaultRetryBase)
		}
	}
	if got := (RetryPolicy{Rand: fixedRand(0)}).Backoff(40); got != defaultRetryCap/2 {
		t.Errorf("default cap: %s", got)
	}
	for _, bad := range []RetryPolicy{{MaxAttempts: -1}, {Base: -time.Second}, {Base: time.Minute, Cap: time.Second}} {
		if _, err := bad.withDefaults(); !errors.Is(err, ErrInvalidData) {
			t.Errorf("policy %+v: %v, want ErrInvalidData", bad, err)
		}
	}
}

func TestRetryLaterBacksOffThenFails(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		policy := RetryPolicy{MaxAttempts: 3, Base: time.Second, Cap: 10 * time.Second, Rand: fixedRand(0.5)}
		engine := NewWaitEngine(e.m)
		f, err := e.m.CreateMirrored(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})
		if err != nil {
			t.Fatal(err)
		}
		for attempt, delay := range []time.Duration{750 * time.Millisecond, 1500 * time.Millisecond} {
			start := e.clock.Now()
			w, err := e.m.RetryLater(e.ctx, f.ID, policy, "rate limited")
			if err != nil {
				t.Fatal(err)
			}
			if w.Status != StatusWaiting || w.Attempts != attempt+1 {
				t.Fatalf("attempt %d: status %s attempts %d", attempt+1, w.Status, w.Attempts)
			}
			var wait struct {
				Kind    string    `json:"kind"`
				At      time.Time `json:"at"`
				Attempt int       `json:"attempt"`
			}
			if err := json.Unmarshal(w.Wait, &wait); err != nil {
				t.Fatal(err)
			}
			if wait.Kind != "timer" || !wait.At.Equal(start.Add(delay)) || wait.Attempt != attempt+1 || len(w.Wait) >= 64 {
				t.Fatalf("attempt %d: wait %s, want a timer at +%s under 64 bytes", attempt+1, w.Wait, delay)
			}
			evs, _ := e.m.ListEvents(e.ctx, f.ID, 1)
			var ev struct {
				Wait  json.RawMessage `json:"wait"`
				Retry struct {
					Attempt     int    `json:"attempt"`
					MaxAttempts int    `json:"max_attempts"`
					Error       string `json:"error"`
					BackoffMs   int64  `json:"backoff_ms"`
				} `json:"retry"`
			}
			if len(evs) != 1 || evs[0].Kind != EventWaiting || json.Unmarshal(evs[0].Payload, &ev) != nil {
				t.Fatalf("waiting event %+v", evs)
			}
			if string(ev.Wait) != string(w.Wait) || ev.Retry.Attempt != attempt+1 || ev.Retry.MaxAttempts != 3 || ev.Retry.Error != "rate limited" || ev.Retry.BackoffMs != delay.Milliseconds() {
				t.Fatalf("waiting event payload %s", evs[0].Payload)
			}
			mustVerify(t, e)
			if rep := engine.TickAt(e.ctx, start.Add(delay-time.Millisecond)); rep.Resumed != 0 {
				t.Fatalf("resumed before the backoff: %+v", rep)
			}
			e.clock.Advance(delay)
			if rep := engine.TickAt(e.ctx, e.clock.Now()); rep.Resumed != 1 || rep.Err != nil {
				t.Fatalf("tick after the backoff: %+v", rep)
			}
			got, _ := e.m.Get(e.ctx, f.ID)
			if got.Status != StatusRunning || got.Attempts != attempt+1 || got.Wait != nil {
				t.Fatalf("after resume: %s attempts %d wait %s", got.Status, got.Attempts, got.Wait)
			}
		}
		last, err := e.m.RetryLater(e.ctx, f.ID, policy, "rate limited")
		if err != nil {
			t.Fatal(err)
		}
		if last.Status != StatusFailed || last.Attempts != 3 {
			t.Fatalf("last attempt: %s attempts %d", last.Status, last.Attempts)
		}
		var st struct {
			Failure struct{ Reason string } `json:"failure"`
		}
		_ = json.Unmarshal(last.State, &st)
		if st.Failure.Reason != "gave up after 3 attempts: rate limited" {
			t.Fatalf("failure reason %q", st.Failure.Reason)
		}
		evs, _ := e.m.ListEvents(e.ctx, f.ID, 1)
		if len(evs) != 1 || evs[0].Kind != EventFailed || !strings.Contains(string(evs[0].Payload), `"attempts":3`) {
			t.Fatalf("last event %+v", evs)
		}
		if _, err := e.m.RetryLater(e.ctx, f.ID, policy, "again"); !errors.Is(err, ErrAlreadyTerminal) {
			t.Fatalf("retry of a failed flow: %v", err)
		}
		mustVerify(t, e)
	})
}

func TestRetryLaterRefusals(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		created, err := e.m.CreateManaged(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})
		if err != nil {
			t.Fatal(err)
		}
		running, err := e.m.CreateMirrored(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})
		if err != nil {
			t.Fatal(err)
		}
		before := e.dump()
		if _, err := e.m.RetryLater(e.ctx, created.ID, RetryPolicy{}, "x"); !errors.Is(err, ErrIllegalTransition) {
			t.Fatalf("retry of a created flow: %v", err)
		}
		if _, err := e.m.RetryLater(e.ctx, running.ID, RetryPolicy{}, "  "); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("blank cause: %v", err)
		}
		if _, err := e.m.RetryLater(e.ctx, running.ID, RetryPolicy{MaxAttempts: -2}, "x"); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("bad policy: %v", err)
		}
		if _, err := e.m.RetryLater(e.ctx, running.ID, RetryPolicy{}, "x", IfRevision(0)); !errors.Is(err, ErrRevisionMismatch) {
			t.Fatalf("stale revision: %v", err)
		}
		if !reflect.DeepEqual(e.dump(), before) {
			t.Fatal("a refused retry wrote something")
		}
		// A stale attempts count is refused by the script and RetryLater
		// recomputes from the actual one.
		if _, err := e.m.store.retry(e.ctx, running.ID, RetryPolicy{MaxAttempts: 5, Base: time.Second, Cap: time.Second, Rand: fixedRand(0)}, "x", 4, mutation{}); err == nil {
			t.Fatal("a stale attempts count was accepted")
		} else if moved := (*attemptsMoved)(nil); !errors.As(err, &moved) || moved.actual != 0 {
			t.Fatalf("stale count: %v", err)
		}
		// MaxAttempts 1: the first failure fails the flow.
		f, err := e.m.RetryLater(e.ctx, running.ID, RetryPolicy{MaxAttempts: 1}, "fatal")
		if err != nil || f.Status != StatusFailed {
			t.Fatalf("max 1: %+v %v", f, err)
		}
		mustVerify(t, e)
	})
}

func TestResetAttempts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f, err := e.m.CreateMirrored(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.RetryLater(e.ctx, f.ID, RetryPolicy{Rand: fixedRand(0)}, "x"); err != nil {
			t.Fatal(err)
		}
		if f, err = e.m.Resume(e.ctx, f.ID, nil); err != nil || f.Attempts != 1 {
			t.Fatalf("resume: %+v %v", f, err)
		}
		r, err := e.m.ResetAttempts(e.ctx, f.ID)
		if err != nil || r.Attempts != 0 || r.Revision != f.Revision+1 {
			t.Fatalf("reset: %+v %v", r, err)
		}
		evs, _ := e.m.ListEvents(e.ctx, f.ID, 1)
		if evs[0].Kind != EventAttemptsReset || string(evs[0].Payload) != `{"attempts":1}` {
			t.Fatalf("reset event %+v", evs[0])
		}
		again, err := e.m.ResetAttempts(e.ctx, f.ID)
		if err != nil || again.Revision != r.Revision {
			t.Fatalf("second reset: %+v %v", again, err)
		}
		mustVerify(t, e)
		e.client.HSet(e.ctx, e.store.keys.flow(f.ID), "att", "-3")
		rep, err := e.store.verify(e.ctx)
		if err != nil || len(rep.Problems) != 1 || rep.Problems[0].Kind != "bad_attempts" {
			t.Fatalf("verify of a bad count: %+v %v", rep, err)
		}
	})
}
