package taskflow

import (
	"errors"
	"strings"
	"testing"
)

func TestCompareAndSetOption(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateManaged(ctx, seedInput())))
		_, err := e.m.StartRunning(ctx, f.ID, IfRevision(5))
		wantErr(t, err, ErrRevisionMismatch)
		f = must(t, try(e.m.StartRunning(ctx, f.ID, IfRevision(0))))
		_, err = e.m.UpdateState(ctx, f.ID, map[string]int{"a": 1}, "", IfRevision(0))
		wantErr(t, err, ErrRevisionMismatch)
		must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"a": 1}, "", IfRevision(1))))
	})
}

// TestRevisionEpochRefusesARevisionHandedOutAgain: a write lost to a
// failover (here: the flow hash put back as it was before the write, as
// a promoted replica that never received it has it) gives its revision
// number to the next write; IfRevisionOf and UpdateAndAppend with the
// flow read before then are refused, because the epoch differs.
func TestRevisionEpochRefusesARevisionHandedOutAgain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f0 := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		key := e.store.keys.flow(f0.ID)
		before := must(t, try(e.client.HGetAll(ctx, key).Result()))
		lost := must(t, try(e.m.UpdateState(ctx, f0.ID, map[string]int{"lost": 1}, "")))
		if lost.Epoch == "" || lost.Epoch == f0.Epoch {
			t.Fatalf("epochs %q then %q: each write must name itself", f0.Epoch, lost.Epoch)
		}
		// The failover: the new master never saw the update.
		if err := e.client.Del(ctx, key).Err(); err != nil {
			t.Fatal(err)
		}
		pairs := make([]any, 0, 2*len(before))
		for k, v := range before {
			pairs = append(pairs, k, v)
		}
		if err := e.client.HSet(ctx, key, pairs...).Err(); err != nil {
			t.Fatal(err)
		}
		other := must(t, try(e.m.UpdateState(ctx, f0.ID, map[string]int{"other": 1}, "")))
		if other.Revision != lost.Revision {
			t.Fatalf("revision %d, the lost write's was %d: the scenario needs it handed out again", other.Revision, lost.Revision)
		}
		_, err := e.m.UpdateState(ctx, f0.ID, map[string]int{"x": 1}, "", IfRevisionOf(lost))
		var rme *RevisionMismatchError
		if !errors.As(err, &rme) || rme.Expected != lost.Revision || rme.Actual != other.Revision || rme.ExpectedEpoch != lost.Epoch {
			t.Fatalf("IfRevisionOf the lost write: %v", err)
		}
		if !strings.Contains(err.Error(), "lost") {
			t.Fatalf("the error does not say the expected write was lost: %v", err)
		}
		if _, _, err := e.store.UpdateAndAppend(ctx, lost, "note", nil); !errors.Is(err, ErrRevisionMismatch) {
			t.Fatalf("UpdateAndAppend of the flow read before the failover: %v", err)
		}
		// The flow as it is now is accepted, by either.
		now := must(t, try(e.m.UpdateState(ctx, f0.ID, map[string]int{"y": 1}, "", IfRevisionOf(other))))
		if _, _, err := e.store.UpdateAndAppend(ctx, now, "note", nil); err != nil {
			t.Fatal(err)
		}
		// A read returns the epoch the last write stamped.
		got := must(t, try(e.m.Get(ctx, f0.ID)))
		if got.Epoch == "" || got.Epoch == now.Epoch {
			t.Fatalf("epoch after UpdateAndAppend: %q (before %q)", got.Epoch, now.Epoch)
		}
	})
}
