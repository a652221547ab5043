package taskflow

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow/fsck"
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

// TestPruneRemovesEarlyEvents: pruning a flow removes the early events
// kept for it (and their entries in the shard's early-event index), so a flow made
// again with the same idempotency key (same id) does not take the pruned
// flow's reply on its first wait; Verify reports an early-event list left of a flow
// that no longer exists, and its repair deletes it.
func TestPruneRemovesEarlyEvents(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		in := seedInput()
		in.IdempotencyKey = "job-7"
		f := must(t, try(e.m.CreateManaged(ctx, in)))
		must(t, try(e.m.StartRunning(ctx, f.ID)))
		must(t, try(e.m.TryResumeExternal(ctx, f.ID, "job", "7", "old reply")))
		if n := e.countEarly(t); n != 1 {
			t.Fatalf("%d kept events, want 1", n)
		}
		must(t, try(e.m.Cancel(ctx, f.ID)))
		e.clock.Advance(2 * time.Hour) // the event is kept for 24 h
		if n := must(t, try(e.m.PruneTerminalFlows(ctx, time.Hour))); n != 1 {
			t.Fatalf("pruned %d, want 1", n)
		}
		if n := e.countEarly(t); n != 0 {
			t.Fatalf("%d kept events after the prune, want 0", n)
		}
		for k := range e.dump() {
			if strings.Contains(k, f.ID.String()) {
				t.Errorf("pruned flow's key %s is left", k)
			}
		}
		again := must(t, try(e.m.CreateManaged(ctx, in)))
		if again.ID != f.ID || again.Revision != 0 {
			t.Fatalf("re-create: %s revision %d, want a new %s", again.ID, again.Revision, f.ID)
		}
		must(t, try(e.m.StartRunning(ctx, again.ID)))
		w := must(t, try(e.m.SetWaiting(ctx, again.ID, WaitExternalEvent("job", "7"))))
		if w.Status != StatusWaiting {
			t.Fatalf("the new flow took the pruned flow's reply: %s %s", w.Status, w.State)
		}
		requireVerifyClean(t, e.m)

		// An early-event list left of a flow that is gone (as an older prune left
		// it) is reported, and the repair deletes it.
		g := e.runningFlow(t)
		must(t, try(e.m.TryResumeExternal(ctx, g.ID, "job", "8", "x")))
		list := e.store.keys.earlyFlow(g.ID)
		must(t, try(e.m.Cancel(ctx, g.ID)))
		e.client.Del(ctx, e.store.keys.flow(g.ID), e.store.keys.events(g.ID))
		for _, st := range allStatuses {
			e.client.ZRem(ctx, e.store.keys.status(e.store.keys.shardOf(g.ID), st), g.ID.String())
		}
		e.client.ZRem(ctx, e.store.keys.owner(e.store.keys.shardOf(g.ID), in.OwnerSessionKey), g.ID.String())
		rep := must(t, try(e.m.Verify(ctx)))
		if len(rep.Problems) != 1 || rep.Problems[0].Kind != fsck.OrphanKey || rep.Problems[0].Key != list || rep.Problems[0].FlowID != g.ID.String() {
			t.Fatalf("problems %+v, want one orphan_key %s", rep.Problems, list)
		}
		rep = must(t, try(e.m.Verify(ctx, fsck.WithRepair())))
		if len(rep.Problems) != 1 || !rep.Problems[0].Repaired {
			t.Fatalf("repair: %+v", rep.Problems)
		}
		if n := e.client.Exists(ctx, list).Val(); n != 0 {
			t.Fatal("the repair left the list")
		}
		if n := e.countEarly(t); n != 0 {
			t.Fatalf("%d kept events after the repair, want 0", n)
		}
		requireVerifyClean(t, e.m)
	})
}
