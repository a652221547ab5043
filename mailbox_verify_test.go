package taskflow

import (
	"reflect"
	"testing"
)

// TestVerifyEarlyEvents: Verify knows the mailbox's keys (kept events of
// both kinds, a claim) and reports them broken.
func TestVerifyEarlyEvents(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := e.runningFlow(t)
		must(t, try(e.m.TryResumeExternal(e.ctx, f.ID, "t", "inbox", "x")))
		must(t, try(e.m.ResumeByCorrelation(e.ctx, "t", "mbox", "y")))
		must(t, try(e.m.ResumeByCorrelation(e.ctx, "t", "claimed", "z")))
		w := e.waitingFlow(t, WaitManual())
		cp := corrPrefix("t", "claimed")
		if _, _, ok, err := e.store.takeEarly(e.ctx, w.ID, cp, "", newEventID()); !ok || err != nil {
			t.Fatalf("take: %v %v", ok, err)
		}
		rep := requireVerifyClean(t, e.m)
		if rep.Keys == 0 {
			t.Fatal("verify saw no keys")
		}
		r := e.store.keys.rendezvous(cp)
		mbox := e.store.keys.mbox(corrPrefix("t", "mbox"))
		e.client.Persist(e.ctx, mbox)
		e.client.RPush(e.ctx, e.store.keys.inbox(f.ID), "garbage")
		e.client.ZRem(e.ctx, e.store.keys.claimDue(r), must(t, try(e.client.HKeys(e.ctx, e.store.keys.claims(r)).Result()))[0])
		got := must(t, try(e.m.Verify(e.ctx)))
		kinds := map[string]string{}
		for _, p := range got.Problems {
			kinds[p.Kind] = p.Key
		}
		want := map[string]string{
			"early_no_ttl":    mbox,
			"bad_early_event": e.store.keys.inbox(f.ID),
			"claim_unindexed": e.store.keys.claims(r),
		}
		if !reflect.DeepEqual(kinds, want) {
			t.Fatalf("problems %+v, want %v", got.Problems, want)
		}
	})
}
