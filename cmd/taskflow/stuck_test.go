package main

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/taskflow-dev/taskflow"
)

// TestStuck: a flow created and never started, one ready with no worker
// for its controller and one whose timer is overdue with no engine
// ticking are listed, each with its code and why; healthy flows are not;
// --fail, --limit and --json; an engine's tick moves the timer's flow on
// and off the list.
func TestStuck(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		manual := e.waiting(ownerA, taskflow.WaitManual())
		r := e.run("stuck").wantCode(t, 0)
		if r.stdout != "no stuck flows\n" || r.stderr != "" {
			t.Fatalf("stuck with none: %q %q", r.stdout, r.stderr)
		}
		e.run("stuck", "--fail").wantCode(t, 0)
		if r = e.run("stuck", "--json").wantCode(t, 0); strings.TrimSpace(r.stdout) != "[]" {
			t.Fatalf("stuck --json with none: %q", r.stdout)
		}

		// Three minutes ago: one flow created and never started, one
		// started on a controller nobody claims for, one set to wait on
		// a timer due two minutes ago.
		past := time.Now().Add(-3 * time.Minute)
		old := e.manager(func() time.Time { return past })
		mk := func(goal string) *taskflow.Flow {
			f, err := old.CreateManaged(ctx, taskflow.CreateManagedInput{ControllerID: "test/nobody", Goal: goal, OwnerSessionKey: ownerA})
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
		created, ready, timer := mk("never started"), mk("never claimed"), mk("never ticked")
		for _, f := range []*taskflow.Flow{ready, timer} {
			if _, err := old.StartRunning(ctx, f.ID); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := old.SetWaiting(ctx, timer.ID, taskflow.WaitTimer(past.Add(time.Minute))); err != nil {
			t.Fatal(err)
		}
		// Healthy: a live lease, a fresh ready flow (the manual wait above
		// waits for a person).
		e.running(ownerB, "held")
		if _, _, err := e.m.Claim(ctx, "test/cli", "worker-7", time.Hour, taskflow.WithClaimWait(time.Second)); err != nil {
			t.Fatal(err)
		}
		fresh := e.running(ownerB, "fresh")

		r = e.run("stuck").wantCode(t, 0)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "ID STATUS CODE TEXT" || r.stderr != "" {
			t.Fatalf("stuck:\n%s\nstderr %q", r.stdout, r.stderr)
		}
		for f, want := range map[*taskflow.Flow]string{
			created: "created created The flow was created 3m ago and never started",
			ready:   `running ready The flow has been ready for 3m, on controller "test/nobody"'s queue, for a worker to claim. No worker waits`,
			timer:   "waiting waiting_timer The flow waits on a timer that was due 2m ago (no engine has ticked this flow space).",
		} {
			if row := rowOf(r.stdout, f.ID.String()); !strings.HasPrefix(row, f.ID.String()+" "+want) {
				t.Fatalf("row of %s: %q, want it to start with %q", f.Goal, row, want)
			}
		}
		for _, f := range []*taskflow.Flow{manual, fresh} {
			if strings.Contains(r.stdout, f.ID.String()) {
				t.Fatalf("healthy flow %s listed:\n%s", f.Goal, r.stdout)
			}
		}

		// --fail prints the list, then fails.
		rf := e.run("stuck", "--fail").wantCode(t, 1)
		if rf.stdout != r.stdout {
			t.Fatalf("stuck --fail printed %q, stuck %q", rf.stdout, r.stdout)
		}
		rf.wantOneLineError(t, "3 stuck flow(s)")

		ids := func(args ...string) []string {
			var xs []taskflow.Explanation
			e.runJSON(&xs, append([]string{"stuck"}, args...)...)
			var out []string
			for _, x := range xs {
				if !x.Stuck || x.Text == "" || x.Moves == "" || x.Code == "" {
					t.Fatalf("json entry %+v", x)
				}
				out = append(out, x.FlowID.String())
			}
			sort.Strings(out)
			return out
		}
		want := func(fs ...*taskflow.Flow) string {
			var out []string
			for _, f := range fs {
				out = append(out, f.ID.String())
			}
			sort.Strings(out)
			return strings.Join(out, " ")
		}
		if got := strings.Join(ids(), " "); got != want(created, ready, timer) {
			t.Fatalf("stuck --json: %s, want %s", got, want(created, ready, timer))
		}

		// --limit: two of the three, and a warning that more may be stuck.
		r = e.run("stuck", "--limit", "2").wantCode(t, 0)
		if n := len(strings.Split(strings.TrimSpace(r.stdout), "\n")); n != 3 {
			t.Fatalf("stuck --limit 2 printed %d lines:\n%s", n, r.stdout)
		}
		if !strings.Contains(r.stderr, "warning: listed the first 2 stuck flows; more may be stuck (raise --limit)") {
			t.Fatalf("stuck --limit 2: stderr %q", r.stderr)
		}
		e.run("stuck", "--limit", "0").wantCode(t, 2).wantOneLineError(t, "--limit 0 is outside 1..1000")
		e.run("stuck", "--limit", "1001").wantCode(t, 2).wantOneLineError(t, "--limit 1001 is outside 1..1000")
		e.run("stuck", "extra").wantCode(t, 2).wantOneLineError(t, `unexpected argument "extra"`)

		// An engine's tick resumes the timer's flow: it is ready now, and
		// the others stay stuck.
		e.run("tick").wantCode(t, 0)
		if f := e.get(timer.ID); f.Status != taskflow.StatusRunning {
			t.Fatalf("after a tick the timer's flow is %s", f.Status)
		}
		if got := strings.Join(ids(), " "); got != want(created, ready) {
			t.Fatalf("stuck --json after a tick: %s, want %s", got, want(created, ready))
		}
	})
}
