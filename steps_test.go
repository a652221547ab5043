package taskflow

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"
)

func TestMirroredStepsUpsertAndDuplicate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		if f.Status != StatusRunning || f.Revision != 1 {
			t.Fatalf("mirrored: %+v", f)
		}
		for i := 0; i < 3; i++ {
			must(t, try(e.m.RecordStepObservation(ctx, StepObservation{
				FlowID: f.ID, RunID: fmt.Sprintf("cron-%d", i), Task: fmt.Sprintf("task-%d", i),
				Status: StepSucceeded, Result: map[string]int{"idx": i},
				ChildSessionKey: "agent:kate:session:child",
			})))
		}
		steps := must(t, try(e.m.ListSteps(ctx, f.ID)))
		if len(steps) != 3 {
			t.Fatalf("steps: %d", len(steps))
		}
		first := steps[0]
		if first.CreatedAt.IsZero() || first.UpdatedAt.IsZero() || first.ID == uuid.Nil {
			t.Fatalf("step fields not read back: %+v", first)
		}
		for i, s := range steps {
			if s.RunID != fmt.Sprintf("cron-%d", i) || string(s.Result) != fmt.Sprintf(`{"idx":%d}`, i) || s.Runtime != RuntimeMirrored {
				t.Fatalf("step %d: %+v", i, s)
			}
		}
		// Upsert in place: same id, child kept, task/status/result replaced.
		up := must(t, try(e.m.RecordStepObservation(ctx, StepObservation{
			FlowID: f.ID, RunID: "cron-0", Task: "task-0b", Status: StepFailed, Result: "boom",
		})))
		if up.ID != first.ID || up.ChildSessionKey != "agent:kate:session:child" || up.Task != "task-0b" ||
			up.Status != StepFailed || string(up.Result) != `"boom"` || !up.CreatedAt.Equal(first.CreatedAt) {
			t.Fatalf("upsert: %+v (first %+v)", up, first)
		}
		if n := len(must(t, try(e.m.ListSteps(ctx, f.ID)))); n != 3 {
			t.Fatalf("upsert added a step: %d", n)
		}
		ev := must(t, try(e.m.ListEvents(ctx, f.ID, 1)))[0]
		if ev.Kind != "step_observed" || string(ev.Payload) != `{"run_id":"cron-0","runtime":"mirrored","status":"failed"}` {
			t.Fatalf("event %+v %s", ev, ev.Payload)
		}
		// Duplicate run id through the store.
		err := e.store.InsertStep(ctx, &FlowStep{FlowID: f.ID, RunID: "cron-1", Runtime: RuntimeManaged, Status: StepPending})
		wantErr(t, err, ErrDuplicateStep)
		must(t, try(0, e.store.InsertStep(ctx, &FlowStep{FlowID: f.ID, RunID: "manual-1", Runtime: RuntimeManaged, Status: StepPending, Task: "t"})))
		if n := len(must(t, try(e.m.ListSteps(ctx, f.ID)))); n != 4 {
			t.Fatalf("insert: %d steps", n)
		}
		// Unknown flow.
		_, err = e.m.RecordStepObservation(ctx, StepObservation{FlowID: uuid.New(), RunID: "x", Status: StepRunning})
		wantErr(t, err, ErrNotFound)
		err = e.store.InsertStep(ctx, &FlowStep{FlowID: uuid.New(), RunID: "x", Runtime: RuntimeManaged, Status: StepPending})
		wantErr(t, err, ErrNotFound)
		_, err = e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "x", Status: "weird"})
		wantErr(t, err, ErrInvalidData)
	})
}

// The step_observed event names the step's runtime, managed or mirrored.
func TestStepObservedEventNamesRuntime(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f, err := e.m.CreateMirrored(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.store.InsertStep(e.ctx, &FlowStep{FlowID: f.ID, RunID: "m1", Runtime: RuntimeManaged, Task: "t", Status: StepPending}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			run  string
			want StepRuntime
		}{{"m1", RuntimeManaged}, {"new", RuntimeMirrored}} {
			st, err := e.m.RecordStepObservation(e.ctx, StepObservation{FlowID: f.ID, RunID: c.run, Task: "t", Status: StepRunning})
			if err != nil {
				t.Fatal(err)
			}
			if st.Runtime != c.want {
				t.Fatalf("step %s: runtime %q, want %q", c.run, st.Runtime, c.want)
			}
			evs, err := e.m.ListEvents(e.ctx, f.ID, 1)
			if err != nil || len(evs) != 1 || evs[0].Kind != EventStepObserved {
				t.Fatalf("events: %+v %v", evs, err)
			}
			var p struct {
				RunID   string `json:"run_id"`
				Runtime string `json:"runtime"`
				Status  string `json:"status"`
			}
			if err := json.Unmarshal(evs[0].Payload, &p); err != nil {
				t.Fatalf("payload %s: %v", evs[0].Payload, err)
			}
			if p.Runtime != string(c.want) || p.RunID != c.run || p.Status != string(StepRunning) {
				t.Fatalf("step %s: payload %s, want runtime %q", c.run, evs[0].Payload, c.want)
			}
		}
		mustVerify(t, e)
	})
}

// A flow holds at most defaultStepsPerFlow steps: a new run id beyond it is
// refused by both ways of adding a step and writes nothing; a step
// already recorded is still updated.
func TestStepsPerFlowAreBounded(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		// Fill to the cap through the store's InsertStep (one script each,
		// pipelined by nothing: the cap is what is tested, not speed).
		for i := 0; i < defaultStepsPerFlow; i++ {
			if err := e.store.InsertStep(ctx, &FlowStep{ID: uuid.New(), FlowID: f.ID, Runtime: RuntimeManaged,
				RunID: fmt.Sprintf("run-%d", i), Status: StepSucceeded}); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		}
		before := e.dump()
		_, err := e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "one-more", Status: StepRunning})
		wantErr(t, err, ErrInvalidData)
		err = e.store.InsertStep(ctx, &FlowStep{ID: uuid.New(), FlowID: f.ID, Runtime: RuntimeManaged, RunID: "one-more", Status: StepRunning})
		wantErr(t, err, ErrInvalidData)
		e.sameDump(t, before, "a step over the cap")
		// An observation of a recorded step still lands.
		st := must(t, try(e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "run-7", Status: StepFailed})))
		if st.Status != StepFailed {
			t.Fatalf("step %+v", st)
		}
		requireVerifyClean(t, e.m)
	})
}

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
