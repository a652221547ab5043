package taskflow

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestWatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx, cancel := context.WithCancel(e.ctx)
		f := must(t, try(e.m.CreateMirrored(e.ctx, fleetInput("ctl/w"))))
		other := must(t, try(e.m.CreateMirrored(e.ctx, fleetInput("ctl/w"))))
		ch := must(t, try(e.m.Watch(ctx, f.ID)))
		all := must(t, try(e.m.WatchAll(ctx)))
		must(t, try(e.m.UpdateState(e.ctx, other.ID, map[string]int{"x": 1}, "")))
		must(t, try(e.m.UpdateState(e.ctx, f.ID, map[string]int{"x": 1}, "")))
		must(t, try(e.m.SetWaiting(e.ctx, f.ID, WaitManual())))
		want := []string{"state_updated", "waiting"}
		for i, k := range want {
			select {
			case ev := <-ch:
				if ev.FlowID != f.ID || ev.Kind != k {
					t.Fatalf("event %d: %+v, want %s of %s", i, ev, k, f.ID)
				}
			case <-time.After(3 * time.Second):
				t.Fatalf("no event %d", i)
			}
		}
		seen := map[uuid.UUID]int{}
		for i := 0; i < 3; i++ {
			select {
			case ev := <-all:
				seen[ev.FlowID]++
			case <-time.After(3 * time.Second):
				t.Fatalf("WatchAll delivered %d of 3", i)
			}
		}
		if seen[f.ID] != 2 || seen[other.ID] != 1 {
			t.Fatalf("WatchAll saw %v", seen)
		}
		cancel()
		for range ch {
		}
		for range all {
		}
	})
}
