package taskflow

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestPrune(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		old := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		must(t, try(e.m.RecordStepObservation(ctx, StepObservation{FlowID: old.ID, RunID: "r1", Status: StepSucceeded})))
		must(t, try(e.m.Finish(ctx, old.ID, nil)))
		oldCancelled := must(t, try(e.m.CreateManaged(ctx, seedInput())))
		must(t, try(e.m.Cancel(ctx, oldCancelled.ID)))
		running := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		e.clock.Advance(10 * 24 * time.Hour)
		recent := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		must(t, try(e.m.Fail(ctx, recent.ID, "x")))

		n := must(t, try(e.m.PruneTerminalFlows(ctx, 7*24*time.Hour)))
		if n != 2 {
			t.Fatalf("pruned %d, want 2", n)
		}
		for _, id := range []uuid.UUID{old.ID, oldCancelled.ID} {
			_, err := e.m.Get(ctx, id)
			wantErr(t, err, ErrNotFound)
			if evs := must(t, try(e.m.ListEvents(ctx, id, 10))); len(evs) != 0 {
				t.Fatalf("events left: %d", len(evs))
			}
		}
		must(t, try(e.m.Get(ctx, running.ID)))
		must(t, try(e.m.Get(ctx, recent.ID)))
		// Nothing of the pruned flows is left: no key names them and no
		// index holds them.
		for k, v := range e.dump() {
			for _, id := range []uuid.UUID{old.ID, oldCancelled.ID} {
				if strings.Contains(k, id.String()) || strings.Contains(v, id.String()) {
					t.Fatalf("pruned flow %s still in %s", id, k)
				}
			}
		}
		if owned := must(t, try(e.m.ListByOwner(ctx, seedInput().OwnerSessionKey))); len(owned) != 2 {
			t.Fatalf("owner index has %d", len(owned))
		}
		if n := must(t, try(e.m.PruneTerminalFlows(ctx, 7*24*time.Hour))); n != 0 {
			t.Fatalf("second prune %d", n)
		}
	})
}
