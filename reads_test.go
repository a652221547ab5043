package taskflow

import (
	"testing"

	"github.com/google/uuid"
)

func TestListEventsLimits(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		for i := 0; i < 5; i++ {
			must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"i": i}, "")))
		}
		if evs := must(t, try(e.m.ListEvents(ctx, f.ID, -1))); len(evs) != 0 {
			t.Fatalf("negative limit returned %d", len(evs))
		}
		evs := must(t, try(e.m.ListEvents(ctx, f.ID, 3)))
		if len(evs) != 3 || evs[0].ID != "7" || evs[2].ID != "5" {
			t.Fatalf("limit 3: %+v", evs)
		}
		if evs := must(t, try(e.m.ListEvents(ctx, uuid.New(), 10))); len(evs) != 0 {
			t.Fatalf("unknown flow has events")
		}
	})
}

func TestEventCap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		for i := 0; i < 10; i++ {
			f = must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"i": i}, "")))
		}
		evs := must(t, try(e.m.ListEvents(ctx, f.ID, 100)))
		if len(evs) != 4 || evs[0].ID != "12" || evs[0].Revision != f.Revision {
			t.Fatalf("capped log: %d events, newest %+v", len(evs), evs[0])
		}
	}, WithLimits(Limits{EventsPerFlow: 4}))
}
