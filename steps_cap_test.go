package taskflow

import (
	"fmt"
	"testing"

	"github.com/google/uuid"
)

// A flow holds at most MaxStepsPerFlow steps: a new run id beyond it is
// refused by both ways of adding a step and writes nothing; a step
// already recorded is still updated.
func TestStepsPerFlowAreBounded(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		// Fill to the cap through the store's InsertStep (one script each,
		// pipelined by nothing: the cap is what is tested, not speed).
		for i := 0; i < MaxStepsPerFlow; i++ {
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
