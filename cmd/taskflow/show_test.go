package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

func TestShow(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		f := e.running(ownerA, "show me")
		if _, err := e.m.UpdateState(ctx, f.ID, json.RawMessage(`{"big":12345678901234567890,"list":[]}`), "step-2"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.RecordStepObservation(ctx, taskflow.StepObservation{
			FlowID: f.ID, RunID: "run-7", Task: "fetch the mail", Status: taskflow.StepSucceeded,
		}); err != nil {
			t.Fatal(err)
		}

		r := e.run("show", f.ID.String()).wantCode(t, 0)
		for _, want := range []string{
			"id:", f.ID.String(), "status:", "running", "goal:", "show me", "revision:", "current_step:", "step-2",
			"state:", `"big": 12345678901234567890`, `"list": []`, "    \"ok\": true",
			"RUN_ID", "run-7", "fetch the mail", "succeeded",
			"KIND", "step_observed", "state_updated", "started", "created",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("show lacks %q:\n%s", want, r.stdout)
			}
		}

		var d struct {
			Flow   map[string]any   `json:"flow"`
			Steps  []map[string]any `json:"steps"`
			Events []map[string]any `json:"events"`
		}
		e.runJSON(&d, "show", f.ID.String())
		if d.Flow["id"] != f.ID.String() || d.Flow["current_step"] != "step-2" || d.Flow["revision"] != float64(2) {
			t.Fatalf("flow: %v", d.Flow)
		}
		if len(d.Steps) != 1 || d.Steps[0]["run_id"] != "run-7" {
			t.Fatalf("steps: %v", d.Steps)
		}
		if len(d.Events) != 4 || d.Events[0]["kind"] != "step_observed" || d.Events[3]["kind"] != "created" {
			t.Fatalf("events: %v", d.Events)
		}

		missing := uuid.NewString()
		e.run("show", missing).wantCode(t, 1).wantOneLineError(t, "flow "+missing+" not found")
		e.run("show", "xyz").wantCode(t, 2).wantOneLineError(t, `"xyz" is not a flow id (want a UUID)`)
	})
}

func TestShowLimitsEvents(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		f := e.running(ownerA, "many events")
		for i := 0; i < 25; i++ {
			if _, err := e.m.UpdateState(context.Background(), f.ID, map[string]any{"i": i}, ""); err != nil {
				t.Fatal(err)
			}
		}
		var d flowDetail
		e.runJSON(&d, "show", f.ID.String())
		if len(d.Events) != showEvents || d.Events[0].Revision != 26 {
			t.Fatalf("%d events, newest revision %d", len(d.Events), d.Events[0].Revision)
		}
	})
}

func TestLeaseWaitColumns(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		due := time.Now().Add(90 * time.Minute).Truncate(time.Second)
		timer := e.waiting(ownerA, taskflow.WaitTimer(due))
		e.waiting(ownerA, taskflow.WaitExternalEvent("mail", "m-1"))
		held := e.running(ownerB, "held")
		_, lease, err := e.m.Claim(ctx, "test/cli", "worker-7", time.Minute, taskflow.WithClaimWait(time.Second))
		if err != nil || lease.FlowID != held.ID {
			t.Fatalf("claim: %v %+v", err, lease)
		}

		r := e.run("list").wantCode(t, 0)
		for _, want := range []string{"WAIT", "DUE", "timer", "event mail", due.UTC().Format(time.RFC3339)} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("list lacks %q:\n%s", want, r.stdout)
			}
		}
		r = e.run("show", timer.ID.String()).wantCode(t, 0)
		if !strings.Contains(r.stdout, "timer, due "+due.UTC().Format("2006-01-02T15:04:05.000Z")) ||
			!strings.Contains(r.stdout, "(in 1h") || strings.Contains(r.stdout, "wait:               {") {
			t.Fatalf("show's wait:\n%s", r.stdout)
		}
		r = e.run("show", held.ID.String()).wantCode(t, 0)
		if !strings.Contains(r.stdout, "lease:") || !strings.Contains(r.stdout, "worker worker-7") ||
			!strings.Contains(r.stdout, "until "+lease.ExpiresAt.UTC().Format("2006-01-02T15:04:05.000Z")) {
			t.Fatalf("show's lease:\n%s", r.stdout)
		}
		var d flowDetail
		e.runJSON(&d, "show", held.ID.String())
		if d.Lease == nil || d.Lease.WorkerID != "worker-7" {
			t.Fatalf("json lease: %+v", d.Lease)
		}

		// Cancelling the leased flow warns, and the event says who and why.
		r = e.run("cancel", held.ID.String(), "--reason", "stuck on a bad input", "--actor", "ops:alice").wantCode(t, 0)
		if !strings.Contains(r.stderr, "warning: flow "+held.ID.String()+" is leased by worker worker-7") {
			t.Fatalf("no lease warning: %q", r.stderr)
		}
		events, err := e.m.ListEvents(ctx, held.ID, 1)
		if err != nil {
			t.Fatal(err)
		}
		if string(events[0].Payload) != `{"actor":"ops:alice","reason":"stuck on a bad input"}` {
			t.Fatalf("cancelled event payload %s", events[0].Payload)
		}
		// The default actor names the CLI.
		x := e.running(ownerA, "x")
		e.run("cancel", x.ID.String()).wantCode(t, 0)
		if events, _ = e.m.ListEvents(ctx, x.ID, 1); !strings.Contains(string(events[0].Payload), `"actor":"cli:`) {
			t.Fatalf("payload %s", events[0].Payload)
		}
	})
}
