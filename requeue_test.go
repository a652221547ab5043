package taskflow

import (
	"testing"
	"time"
)

func TestRequeueExpiredLease(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		defer e.m.Close()
		f := must(t, try(e.m.CreateMirrored(ctx, fleetInput("ctl/rq"))))
		_, l1, err := e.m.Claim(ctx, "ctl/rq", "w1", time.Second)
		if err != nil || l1 == nil {
			t.Fatalf("claim %v", err)
		}
		// A live lease is never taken away.
		if g, err := e.m.RequeueExpiredLease(ctx, f.ID); err != nil || g != nil {
			t.Fatalf("live lease requeued: %v %v", g, err)
		}
		e.clock.Advance(2 * time.Second)
		g, err := e.m.RequeueExpiredLease(ctx, f.ID)
		if err != nil || g == nil || g.Status != StatusRunning {
			t.Fatalf("expired lease not requeued: %v %v", g, err)
		}
		if l, err := e.m.LeaseOf(ctx, f.ID); err != nil || l != nil {
			t.Fatalf("lease still there: %v %v", l, err)
		}
		got, l2, err := e.m.Claim(ctx, "ctl/rq", "w2", time.Second, WithClaimWait(0))
		if err != nil || got == nil || got.ID != f.ID || l2.WorkerID != "w2" {
			t.Fatalf("reclaim: %v %v", got, err)
		}
		kinds := eventKinds(t, e, f.ID)
		if kinds[0] != "claimed" || kinds[1] != "lease_expired" {
			t.Fatalf("events %v", kinds)
		}
		// The tick finds nothing left to do.
		if rep := e.engine().Tick(ctx); rep.LeasesExpired != 0 || rep.Errors != 0 {
			t.Fatalf("tick %+v", rep)
		}
		requireVerifyClean(t, e.m)
	})
}
