package taskflow

import (
	"testing"
	"time"
)

// TestUpdateAndAppendMovesControllerQueue: a whole-record write that
// changes a flow's controller queues it for the new controller, whether
// it stays running, becomes running, or is leased at the time (the old
// code left it on the old controller's queue, where no worker of the new
// controller could claim it, and the old one claimed a flow not its own).
func TestUpdateAndAppendMovesControllerQueue(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		claim := func(ctl string) *Flow {
			t.Helper()
			f, _, err := e.m.Claim(ctx, ctl, "w", time.Minute, WithClaimWait(0))
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
		write := func(f *Flow, ctl string, st FlowStatus) *Flow {
			t.Helper()
			f.ControllerID, f.Status = ctl, st
			if st != StatusWaiting {
				f.Wait = nil
			}
			nf, _, err := e.store.UpdateAndAppend(ctx, f, "moved", nil)
			if err != nil {
				t.Fatal(err)
			}
			return nf
		}
		// Running and queued: it moves queue.
		in := seedInput()
		in.ControllerID = "old"
		f := must(t, try(e.m.CreateMirrored(ctx, in)))
		write(f, "new", StatusRunning)
		if got := claim("old"); got != nil {
			t.Fatalf("the old controller claimed %s", got.ID)
		}
		if got := claim("new"); got == nil || got.ID != f.ID {
			t.Fatalf("the new controller did not get the flow: %v", got)
		}
		// Waiting, written back to running under a new controller.
		w := e.waitingFlow(t, WaitManual()) // controller from seedInput
		write(w, "newer", StatusRunning)
		if got := claim(seedInput().ControllerID); got != nil {
			t.Fatalf("the old controller claimed %s", got.ID)
		}
		if got := claim("newer"); got == nil || got.ID != w.ID {
			t.Fatalf("the new controller did not get the resumed flow: %v", got)
		}
		// Leased: the lease stays; once released the flow goes to the new
		// controller.
		in.ControllerID = "a"
		l := must(t, try(e.m.CreateMirrored(ctx, in)))
		_, lease, err := e.m.Claim(ctx, "a", "w", time.Minute, WithClaimWait(0))
		if err != nil || lease == nil {
			t.Fatalf("claim: %v", err)
		}
		l = must(t, try(e.m.Get(ctx, l.ID)))
		write(l, "b", StatusRunning)
		if err := e.m.Release(ctx, lease); err != nil {
			t.Fatal(err)
		}
		if got := claim("a"); got != nil {
			t.Fatalf("the old controller claimed %s", got.ID)
		}
		if got := claim("b"); got == nil || got.ID != l.ID {
			t.Fatalf("the new controller did not get the released flow: %v", got)
		}
		// Running to waiting under a new controller: on no queue.
		r := must(t, try(e.m.CreateMirrored(ctx, in)))
		r.Wait = []byte(`{"kind":"manual"}`)
		write(r, "c", StatusWaiting)
		if claim("a") != nil || claim("c") != nil {
			t.Fatal("a waiting flow was claimed")
		}
		requireVerifyClean(t, e.m)
	})
}
