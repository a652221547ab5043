package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/taskflow-dev/taskflow"
)

// events builds a flow's log, newest first as ListEvents returns it, from
// "kind" or "kind@token" entries given oldest first; lease_expired takes
// its token in the payload, as the engine writes it.
func events(entries ...string) []*taskflow.FlowEvent {
	out := make([]*taskflow.FlowEvent, len(entries))
	for i, e := range entries {
		kind, token, _ := strings.Cut(e, "@")
		ev := &taskflow.FlowEvent{ID: strconv.Itoa(i + 1), Kind: taskflow.EventKind(kind), Payload: json.RawMessage(`{}`)}
		if taskflow.EventKind(kind) == taskflow.EventLeaseExpired {
			ev.Payload = json.RawMessage(`{"worker":"worker-1","lease":"` + token + `"}`)
		} else {
			ev.Lease = token
		}
		out[len(entries)-1-i] = ev
	}
	return out
}

func TestLeaseOrder(t *testing.T) {
	ok := [][]string{
		{"created", "started", "claimed@a", "state_updated@a", "step_observed", "finished@a"},
		// A peer's unleased write while a lease is live.
		{"created", "started", "claimed@a", "state_updated", "state_updated@a", "released@a", "claimed@b", "waiting@b",
			"resumed", "claimed@c", "finished@c"},
		{"created", "started", "claimed@a", "state_updated@a", "lease_expired@a", "claimed@b", "failed@b"},
	}
	for _, log := range ok {
		if why := leaseOrder(audited{events: events(log...)}); why != "" {
			t.Errorf("%v: %s", log, why)
		}
	}
	bad := map[string][]string{
		"which had ended":                     {"created", "started", "claimed@a", "lease_expired@a", "claimed@b", "state_updated@a"},
		"under lease b while lease a is live": {"created", "started", "claimed@a", "state_updated@b"},
		"never claimed":                       {"created", "started", "state_updated@a"},
		"had ended":                           {"created", "started", "claimed@a", "waiting@a", "resumed", "state_updated@a"},
		"is live":                             {"created", "started", "claimed@a", "claimed@b"},
	}
	for want, log := range bad {
		if why := leaseOrder(audited{events: events(log...)}); !strings.Contains(why, want) {
			t.Errorf("%v: %q, want it to say %q", log, why, want)
		}
	}
}

// demoChecks is how many invariants the demo checks.
const demoChecks = 7

// wantPasses checks a demo's output: every check passed.
func wantPasses(t *testing.T, r result) {
	t.Helper()
	if n := strings.Count(r.stdout, "PASS"); n != demoChecks || strings.Contains(r.stdout, "FAIL") {
		t.Fatalf("demo checks (%d PASS):\n%s\nstderr:\n%s", n, r.stdout, r.stderr)
	}
}

func TestDemoEmbedded(t *testing.T) {
	r := runCLI(t, "demo", "--flows", "40", "--workers", "3").wantCode(t, 0)
	wantPasses(t, r)
	if !strings.Contains(r.stdout, "embedded Redis") {
		t.Fatalf("stdout:\n%s", r.stdout)
	}
}

func TestDemoOnBackend(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		r := e.run("demo", "--flows", "40", "--workers", "3").wantCode(t, 0)
		wantPasses(t, r)
		if !strings.Contains(r.stdout, "taskflow list --redis") {
			t.Fatalf("no hint:\n%s", r.stdout)
		}
		var page listPage
		e.runJSON(&page, "list", "--limit", "100")
		if len(page.Flows) != 40 {
			t.Fatalf("%d flows left, want 40", len(page.Flows))
		}
		for _, f := range page.Flows {
			if !f.Status.IsTerminal() {
				t.Fatalf("flow %s is %s", f.ID, f.Status)
			}
		}

		var rep demoReport
		e.runJSON(&rep, "demo", "--flows", "20", "--workers", "2")
		if !rep.Pass || rep.Flows != 20 || len(rep.Checks) != demoChecks || rep.ResumesByKind["timer"] != 4 {
			t.Fatalf("json report: %+v", rep)
		}
		// Every flow is claimed at least once, and again after its resume,
		// handoff or stall; plans 3, 10 and 17 stall.
		claims := 0
		for _, n := range rep.ClaimsByWorker {
			claims += n
		}
		if len(rep.ClaimsByWorker) != 2 || claims != rep.Claims || rep.Claims < 20+rep.ResumesByKind["timer"] ||
			rep.Stalled != 3 || rep.LeasesExpired < 3 || rep.StaleFenced != 3 {
			t.Fatalf("json report, claims: %+v", rep)
		}
	})
}
