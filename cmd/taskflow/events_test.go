package main

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

func TestEvents(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		f := e.waiting(ownerA, taskflow.WaitManual())
		r := e.run("events", f.ID.String()).wantCode(t, 0)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], "waiting") {
			t.Fatalf("events table:\n%s", r.stdout)
		}
		var events []struct {
			taskflow.FlowEvent
			ID int64 `json:"id"`
		}
		e.runJSON(&events, "events", f.ID.String(), "--limit", "2")
		if len(events) != 2 || events[0].Kind != taskflow.EventWaiting || events[1].Kind != taskflow.EventStarted ||
			events[0].Revision != 2 || events[0].FlowID != f.ID {
			t.Fatalf("events: %+v", events)
		}
		// The id is a number, as the revision is.
		var raw []map[string]any
		e.runJSON(&raw, "events", f.ID.String())
		var show struct {
			Events []map[string]any `json:"events"`
		}
		e.runJSON(&show, "show", f.ID.String())
		for _, ev := range append(raw, show.Events...) {
			if _, ok := ev["id"].(float64); !ok {
				t.Fatalf("event id %v (%T) is not a number like the revision %v", ev["id"], ev["id"], ev["revision"])
			}
		}
		missing := uuid.NewString()
		e.run("events", missing).wantCode(t, 1).wantOneLineError(t, "flow "+missing+" not found")
	})
}
