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
		var events []taskflow.FlowEvent
		e.runJSON(&events, "events", f.ID.String(), "--limit", "2")
		if len(events) != 2 || events[0].Kind != taskflow.EventWaiting || events[1].Kind != taskflow.EventStarted ||
			events[0].Revision != 2 || events[0].FlowID != f.ID {
			t.Fatalf("events: %+v", events)
		}
		missing := uuid.NewString()
		e.run("events", missing).wantCode(t, 1).wantOneLineError(t, "flow "+missing+" not found")
	})
}
