package taskflow

import (
	"errors"
	"strings"
	"testing"
)

// TestFailAtStateCap: a flow whose state sits at its size cap can still
// be failed (issue 11 item 8), while an update is refused.
func TestFailAtStateCap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})))
		must(t, try(e.m.UpdateState(ctx, f.ID, map[string]string{"big": strings.Repeat("x", 1000)}, "")))
		if _, err := e.m.UpdateState(ctx, f.ID, map[string]string{"more": "y"}, ""); err == nil {
			t.Fatal("the state is not at its cap")
		}
		got, err := e.m.Fail(ctx, f.ID, "out of room")
		if err != nil {
			t.Fatalf("Fail at the state cap: %v", err)
		}
		if got.Status != StatusFailed || !strings.Contains(string(got.State), "out of room") {
			t.Fatalf("failed flow: %s %s", got.Status, got.State)
		}
	}, WithMaxStateBytes(1010))
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
	}, WithMaxStateBytes(1010))
}
