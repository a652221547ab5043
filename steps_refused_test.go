package taskflow

import (
	"errors"
	"testing"
)

// TestStepsRefusedOnFinishedAndCancelPending: a terminal or
// cancel-requested flow takes no more steps, and the refusal writes
// nothing.
func TestStepsRefusedOnFinishedAndCancelPending(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		in := CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"}
		done := must(t, try(e.m.CreateMirrored(ctx, in)))
		must(t, try(e.m.Finish(ctx, done.ID, nil)))
		pending := must(t, try(e.m.CreateMirrored(ctx, in)))
		must(t, try(e.m.RequestCancel(ctx, pending.ID)))
		for _, c := range []struct {
			f    *Flow
			want error
		}{{done, ErrAlreadyTerminal}, {pending, ErrCancelPending}} {
			before := e.dump()
			_, err := e.m.RecordStepObservation(ctx, StepObservation{FlowID: c.f.ID, RunID: "late", Status: StepRunning})
			if !errors.Is(err, c.want) {
				t.Fatalf("step on %s flow: %v, want %v", c.f.ID, err, c.want)
			}
			after := e.dump()
			if len(after) != len(before) {
				t.Fatalf("a refused step changed Redis")
			}
			for k, v := range before {
				if after[k] != v {
					t.Fatalf("a refused step changed %s", k)
				}
			}
		}
	})
}
