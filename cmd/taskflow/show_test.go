package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/childview"
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

// startChildren starts one child under parent for each key, of the
// "test/child" controller.
func (e *testEnv) startChildren(parent uuid.UUID, keys ...string) []*taskflow.Flow {
	e.t.Helper()
	ins := make([]taskflow.ChildInput, len(keys))
	for i, k := range keys {
		ins[i] = taskflow.ChildInput{Key: k, Flow: taskflow.CreateManagedInput{
			ControllerID: "test/child", Goal: "part " + k, OwnerSessionKey: ownerA,
		}}
	}
	kids, err := e.m.StartChildren(context.Background(), parent, ins)
	if err != nil {
		e.t.Fatal(err)
	}
	return kids
}

// TestShowChildren: a child names its parent and its key; a parent lists
// its first 20 children and how many more it has, and, while it waits on
// them, its join and the count of its children's outcomes.
func TestShowChildren(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		parent := e.running(ownerA, "fan out")
		keys := make([]string, 25)
		for i := range keys {
			keys[i] = fmt.Sprintf("part-%02d", i)
		}
		keys[2] = "line\nbreak"
		kids := e.startChildren(parent.ID, keys...)
		deadline := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
		if _, err := e.m.SetWaiting(ctx, parent.ID, taskflow.WaitChildren(taskflow.Join{Need: 20, FailFast: false, Deadline: deadline})); err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.Finish(ctx, kids[0].ID, map[string]any{"answer": 42}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.Fail(ctx, kids[1].ID, "bad input"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.Cancel(ctx, kids[3].ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.Finish(ctx, kids[22].ID, nil); err != nil { // beyond the first 20
			t.Fatal(err)
		}

		// The child names its parent and its key.
		r := e.run("show", kids[2].ID.String()).wantCode(t, 0)
		if !strings.Contains(r.stdout, "parent:") || !strings.Contains(r.stdout, parent.ID.String()+", key line break\n") ||
			strings.Contains(r.stdout, "children (") {
			t.Fatalf("show of a child:\n%s", r.stdout)
		}
		var cd struct {
			Flow     map[string]any `json:"flow"`
			Children *struct{}      `json:"children"`
		}
		e.runJSON(&cd, "show", kids[2].ID.String())
		if cd.Flow["parent_id"] != parent.ID.String() || cd.Flow["child_key"] != "line\nbreak" || cd.Children != nil {
			t.Fatalf("json of a child: %v, children %v", cd.Flow, cd.Children)
		}

		// The parent: its join, its first 20 children, 5 more.
		r = e.run("show", parent.ID.String()).wantCode(t, 0)
		due := deadline.Format("2006-01-02T15:04:05.000Z")
		for _, want := range []string{
			"children:           25\n",
			"wait:               children, need 20, deadline " + due + " (in ",
			"join: need 20 of 25, fail_fast false, deadline " + due + " (in ",
			"  finished 2, failed 1, cancelled 1, pending 21\n",
			"children (25, in start order):\n",
			"  KEY ", " ID ", " STATUS ", " ENDED\n",
			"  and 5 more (the dashboard pages them: taskflow ui)\n",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("show of the parent lacks %q:\n%s", want, r.stdout)
			}
		}
		for i, want := range map[int]string{
			0: "part-00 %s finished yes", 1: "part-01 %s failed yes", 2: "line break %s running no",
			3: "part-03 %s cancelled yes", 4: "part-04 %s running no", 19: "part-19 %s running no",
		} {
			if got, want := rowOf(r.stdout, kids[i].ID.String()), fmt.Sprintf(want, kids[i].ID); got != want {
				t.Fatalf("child %d's row: %q, want %q\n%s", i, got, want, r.stdout)
			}
		}
		if strings.Contains(r.stdout, "part-20") || strings.Contains(r.stdout, "line\nbreak") {
			t.Fatalf("show of the parent lists more than 20 children, or a raw newline:\n%s", r.stdout)
		}

		var d flowDetail
		e.runJSON(&d, "show", parent.ID.String())
		want := childview.Join{Need: 20, Deadline: deadline, Total: 25, Finished: 2, Failed: 1, Cancelled: 1, Pending: 21}
		if d.Children == nil || d.Children.Total != 25 || len(d.Children.First) != 20 || d.Children.More != 5 ||
			d.Children.Join == nil || *d.Children.Join != want {
			t.Fatalf("json children: %+v", d.Children)
		}
		first := d.Children.First[0]
		var final struct{ Answer int }
		if err := json.Unmarshal(first.State, &final); err != nil || final.Answer != 42 ||
			first.ID != kids[0].ID || first.Key != "part-00" || first.Status != taskflow.StatusFinished || !first.Ended {
			t.Fatalf("json first child: %+v, state %s (%v)", first, first.State, err)
		}
		if c := d.Children.First[4]; c.Status != taskflow.StatusRunning || c.Ended {
			t.Fatalf("json fifth child: %+v", c)
		}

		// A parent that does not wait on its children: no join; all of
		// them listed.
		other := e.running(ownerA, "two parts")
		e.startChildren(other.ID, "a", "b")
		r = e.run("show", other.ID.String()).wantCode(t, 0)
		if !strings.Contains(r.stdout, "children (2, in start order):") || strings.Contains(r.stdout, "join:") || strings.Contains(r.stdout, "more") {
			t.Fatalf("show of a running parent:\n%s", r.stdout)
		}
		var od flowDetail
		e.runJSON(&od, "show", other.ID.String())
		if od.Children == nil || od.Children.Total != 2 || len(od.Children.First) != 2 || od.Children.More != 0 || od.Children.Join != nil {
			t.Fatalf("json children of a running parent: %+v", od.Children)
		}
		// All of them, fail fast, no deadline.
		if _, err := e.m.SetWaiting(ctx, other.ID, taskflow.WaitChildren(taskflow.Join{FailFast: true})); err != nil {
			t.Fatal(err)
		}
		r = e.run("show", other.ID.String()).wantCode(t, 0)
		if !strings.Contains(r.stdout, "wait:               children, need all, fail fast\n") ||
			!strings.Contains(r.stdout, "join: need all 2, fail_fast true, deadline none\n  finished 0, failed 0, cancelled 0, pending 2\n") {
			t.Fatalf("show of a parent waiting on all its children, fail fast:\n%s", r.stdout)
		}
	})
}

// rowOf is the line of out that holds s, its fields one space apart.
func rowOf(out, s string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, s) {
			return strings.Join(strings.Fields(line), " ")
		}
	}
	return ""
}

func TestShowAttributes(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		f := e.find("kate/upload", ownerA, map[string]string{"customer": "acme", "chapter": "7"})
		r := e.run("show", f.ID.String()).wantCode(t, 0)
		if !strings.Contains(r.stdout, "attributes:") || !strings.Contains(r.stdout, "chapter=7, customer=acme") {
			t.Fatalf("show lacks the attributes:\n%s", r.stdout)
		}
		var d struct {
			Flow struct {
				Attributes map[string]string `json:"attributes"`
			} `json:"flow"`
		}
		e.runJSON(&d, "show", f.ID.String())
		if len(d.Flow.Attributes) != 2 || d.Flow.Attributes["customer"] != "acme" || d.Flow.Attributes["chapter"] != "7" {
			t.Fatalf("JSON attributes: %v", d.Flow.Attributes)
		}
		// A flow without attributes has no such line.
		plain := e.create(ownerA, "plain")
		if r := e.run("show", plain.ID.String()).wantCode(t, 0); strings.Contains(r.stdout, "attributes:") {
			t.Fatalf("show of a flow without attributes:\n%s", r.stdout)
		}
	})
}
