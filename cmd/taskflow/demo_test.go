package main

import (
	"strings"
	"testing"

	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/demo"
)

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

		var rep demo.Report
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
