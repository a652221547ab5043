package taskflow

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestTryResumeExternal(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := e.waitingFlow(t, WaitExternalEvent("mail", "m-1"))
		for _, c := range []struct{ topic, corr string }{{"mail", "m-2"}, {"sms", "m-1"}, {"mai", "lm-1"}} {
			got, err := e.m.TryResumeExternal(e.ctx, f.ID, c.topic, c.corr, nil)
			if got != nil || err != nil {
				t.Fatalf("mismatch %v resumed: %v %v", c, got, err)
			}
		}
		if got, err := e.m.TryResumeExternal(e.ctx, uuid.New(), "mail", "m-1", nil); got != nil || err != nil {
			t.Fatalf("unknown flow: %v %v", got, err)
		}
		running := must(t, try(e.m.CreateMirrored(e.ctx, seedInput())))
		if got, err := e.m.TryResumeExternal(e.ctx, running.ID, "mail", "m-1", nil); got != nil || err != nil {
			t.Fatalf("running flow: %v %v", got, err)
		}
		got, err := e.m.TryResumeExternal(e.ctx, f.ID, "mail", "m-1", map[string]string{"from": "bob"})
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
		if again, err := e.m.TryResumeExternal(e.ctx, f.ID, "mail", "m-1", nil); again != nil || err != nil {
			t.Fatalf("second resume: %v %v", again, err)
		}
		if n := countKind(eventKinds(t, e, f.ID), EventResumed); n != 1 {
			t.Fatalf("%d resumed events", n)
		}
	})
}

// TestResumeByCorrelation: with early events off, an event resumes every
// flow waiting for it (early_test.go has the early events' own rules).
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

// TestUnmergeableEventFailsTheFlow: an event whose merge would pass the
// state cap is not dropped silently: the call errors (ErrStateTooLarge)
// and the waiting flow is failed with a reason that says so.
func TestUnmergeableEventFailsTheFlow(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})))
		must(t, try(e.m.UpdateState(ctx, f.ID, map[string]string{"big": strings.Repeat("x", 900)}, "")))
		must(t, try(e.m.SetWaiting(ctx, f.ID, WaitExternalEvent("mail", "m-1"))))
		_, err := e.m.TryResumeExternal(ctx, f.ID, "mail", "m-1", map[string]string{"body": strings.Repeat("y", 200)})
		if !errors.Is(err, ErrStateTooLarge) {
			t.Fatalf("resume past the cap: %v", err)
		}
		got := must(t, try(e.m.Get(ctx, f.ID)))
		if got.Status != StatusFailed || !strings.Contains(string(got.State), "could not be merged") {
			t.Fatalf("flow after an unmergeable event: %s %s", got.Status, got.State)
		}
	}, WithLimits(Limits{StateBytes: 1010}))
}
