package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

// TestExplain: a flow ready for minutes with no worker for its
// controller is explained as stuck, in words, code and sorted facts, and
// as the library's JSON; a leased flow and an ended one are not stuck;
// an unknown id is said as show says it.
func TestExplain(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		// Started three and a half minutes ago, on a controller no worker
		// claims for.
		past := time.Now().Add(-210 * time.Second)
		old := e.manager(func() time.Time { return past })
		f, err := old.CreateManaged(ctx, taskflow.CreateManagedInput{ControllerID: "test/nobody", Goal: "wait in vain", OwnerSessionKey: ownerA})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := old.StartRunning(ctx, f.ID); err != nil {
			t.Fatal(err)
		}

		r := e.run("explain", f.ID.String()).wantCode(t, 0)
		for _, want := range []string{
			"The flow has been ready for 3m, on controller \"test/nobody\"'s queue, for a\nworker to claim. No worker waits for that controller's flows.\n\n",
			"What moves it: A worker's Claim for controller \"test/nobody\".\n\n",
			"flow:    " + f.ID.String() + "\n",
			"status:  running\n",
			"code:    ready\n",
			"stuck:   true (nothing in place will move it)\n",
			"facts:\n",
			"  controller_id    test/nobody\n",
			"  ready_since      " + past.UTC().Format(time.RFC3339) + "\n",
			"  waiting_workers  0\n",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("explain lacks %q:\n%s", want, r.stdout)
			}
		}
		// The facts come sorted by key.
		last := -1
		for _, k := range []string{"controller_id", "ready_s", "ready_since", "waiting_workers"} {
			i := strings.Index(r.stdout, "\n  "+k+" ")
			if i <= last {
				t.Fatalf("fact %s out of order:\n%s", k, r.stdout)
			}
			last = i
		}

		var x taskflow.Explanation
		e.runJSON(&x, "explain", f.ID.String())
		if x.FlowID != f.ID || x.Status != taskflow.StatusRunning || x.Code != "ready" || !x.Stuck ||
			!strings.Contains(x.Text, "No worker waits") || x.Moves != `A worker's Claim for controller "test/nobody".` ||
			x.Facts["controller_id"] != "test/nobody" || x.Facts["waiting_workers"] != float64(0) {
			t.Fatalf("json: %+v", x)
		}
		if s, _ := x.Facts["ready_s"].(float64); s < 210 || s > 270 {
			t.Fatalf("json ready_s %v, want about 210", x.Facts["ready_s"])
		}

		// A flow under a live lease is healthy.
		held := e.running(ownerB, "held")
		if _, _, err := e.m.Claim(ctx, "test/cli", "worker-7", time.Hour, taskflow.WithClaimWait(time.Second)); err != nil {
			t.Fatal(err)
		}
		r = e.run("explain", held.ID.String()).wantCode(t, 0)
		for _, want := range []string{"worker-7", "holds the flow under a lease that expires in 59m", "code:    leased\n", "stuck:   false\n", "  worker_id         worker-7\n"} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("explain of a leased flow lacks %q:\n%s", want, r.stdout)
			}
		}
		var hx taskflow.Explanation
		e.runJSON(&hx, "explain", held.ID.String())
		if hx.Code != "leased" || hx.Stuck || hx.Facts["worker_id"] != "worker-7" {
			t.Fatalf("json of a leased flow: %+v", hx)
		}

		// An ended flow: no engine ever ticked here, so no facts.
		done := e.running(ownerA, "done")
		if _, err := e.m.Finish(ctx, done.ID, nil); err != nil {
			t.Fatal(err)
		}
		r = e.run("explain", done.ID.String()).wantCode(t, 0)
		if !strings.HasPrefix(r.stdout, "The flow finished ") ||
			!strings.Contains(r.stdout, "s ago.\n\nWhat moves it: Nothing: an ended flow never moves again.\n") ||
			!strings.Contains(r.stdout, "code:    ended\n") || !strings.Contains(r.stdout, "stuck:   false\n") ||
			!strings.HasSuffix(r.stdout, "\nfacts: none\n") {
			t.Fatalf("explain of an ended flow:\n%s", r.stdout)
		}

		// An unknown id is what show says of it; a bad one is bad usage.
		missing := uuid.NewString()
		shown := e.run("show", missing).wantCode(t, 1)
		r = e.run("explain", missing).wantCode(t, 1)
		r.wantOneLineError(t, "flow "+missing+" not found")
		if r.stderr != shown.stderr {
			t.Fatalf("explain says %q of an unknown id, show %q", r.stderr, shown.stderr)
		}
		e.run("explain", missing, "--json").wantCode(t, 1).wantJSONError(t, "flow "+missing+" not found")
		e.run("explain", "xyz").wantCode(t, 2).wantOneLineError(t, `"xyz" is not a flow id (want a UUID)`)
		e.run("explain").wantCode(t, 2).wantOneLineError(t, "missing <id>")
	})
}
