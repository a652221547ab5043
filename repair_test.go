package taskflow

import (
	"testing"
	"time"
)

// TestRepairLeavesAFlowThatWaitedAgainAlone: a repair reads a waiting
// flow to rebuild its index entries; before its script runs, the flow is
// resumed and waits on something else. The repair must index the new
// wait, not restore the old one (the old code put a 48 h timer back in
// place of a 1 h one, and indexed a correlation id the flow no longer
// waited for).
func TestRepairLeavesAFlowThatWaitedAgainAlone(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		now := e.clock.Now()
		k := e.store.keys
		for _, c := range []struct {
			name        string
			first, then WaitCondition
		}{
			{"timer", WaitTimer(now.Add(48 * time.Hour)), WaitTimer(now.Add(time.Hour))},
			{"external", WaitExternalEvent("mail", "old"), WaitExternalEvent("mail", "new")},
			{"to timer", WaitExternalEvent("mail", "old2"), WaitTimer(now.Add(2 * time.Hour))},
		} {
			f := e.waitingFlow(t, c.first)
			// A real problem for the repair to fix.
			e.client.ZRem(ctx, k.owner(k.shardOf(f.ID), f.OwnerSessionKey), f.ID.String())
			c2 := e.b.client(t)
			verifier := NewManager(e.reopenStore(c2))
			c2.AddHook(&beforeScript{sha: verifier.store.scripts.reindexFlow.Hash(), fn: func() {
				must(t, try(e.m.Resume(ctx, f.ID, nil)))
				must(t, try(e.m.SetWaiting(ctx, f.ID, c.then)))
			}})
			rep := must(t, try(verifier.Verify(ctx, WithRepair())))
			if len(rep.Problems) != 1 || rep.Problems[0].Kind != "owner_index_missing" || !rep.Problems[0].Repaired {
				t.Fatalf("%s: repair report %+v", c.name, rep.Problems)
			}
			after := must(t, try(e.m.Verify(ctx)))
			if !after.OK() {
				t.Fatalf("%s: the repair damaged the flow: %+v", c.name, after.Problems)
			}
			if c.then.Kind == WaitKindTimer {
				if got := e.client.ZScore(ctx, k.timers(k.shardOf(f.ID)), f.ID.String()).Val(); int64(got) != c.then.At.UnixMilli() {
					t.Fatalf("%s: timer entry at %v, want %v", c.name, int64(got), c.then.At.UnixMilli())
				}
			}
			if c.first.Kind == WaitKindExternalEvent {
				if got := must(t, try(e.m.ResumeByCorrelation(ctx, c.first.Topic, c.first.CorrelationID, nil))); len(got) != 0 {
					t.Fatalf("%s: the old correlation id still resumes the flow", c.name)
				}
			}
		}
	})
}

// TestRepairOfAStepBesidePrune: a repair that puts a step back in its
// flow's step set must not recreate the set of a flow pruned meanwhile
// (the old repair counted the set, then wrote it, in two commands).
func TestRepairOfAStepBesidePrune(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		must(t, try(e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "r1", Status: StepSucceeded})))
		must(t, try(e.m.Finish(ctx, f.ID, nil)))
		e.client.ZRem(ctx, e.store.keys.steps(f.ID), "r1") // step_unindexed
		c2 := e.b.client(t)
		verifier := NewManager(e.reopenStore(c2))
		pruned := 0
		c2.AddHook(&beforeKey{key: e.store.keys.steps(f.ID), skip: []string{"zrank", "exists", verifier.store.scripts.verifyFlow.Hash()}, fn: func() {
			e.clock.Advance(time.Millisecond)
			pruned = must(t, try(e.m.PruneTerminalFlows(ctx, 0)))
		}})
		must(t, try(verifier.Verify(ctx, WithRepair())))
		if pruned != 1 {
			t.Fatalf("the prune in the window pruned %d flows", pruned)
		}
		// The unindexed step record is left (prune deletes the steps it
		// finds in the set), but the set is not recreated.
		if e.client.Exists(ctx, e.store.keys.steps(f.ID)).Val() != 0 {
			t.Fatal("the repair recreated the step set of a pruned flow")
		}
		// The next repair deletes the orphan; the space is clean.
		must(t, try(e.m.Verify(ctx, WithRepair())))
		requireVerifyClean(t, e.m)
	})
}
