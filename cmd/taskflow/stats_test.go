package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
)

// statsSpace makes 1 created, 2 running (test/cli's ready queue), and 1
// waiting flow whose timer is a minute overdue.
func statsSpace(e *testEnv) {
	e.create(ownerA, "c")
	e.running(ownerA, "r1")
	e.running(ownerA, "r2")
	e.waiting(ownerA, taskflow.WaitTimer(time.Now().Add(-time.Minute)))
}

func TestStats(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		statsSpace(e)
		var st taskflow.Stats
		e.runJSON(&st, "stats")
		if st.Total != 4 || st.Flows[taskflow.StatusRunning] != 2 || st.Flows[taskflow.StatusWaiting] != 1 ||
			st.Timers.Due != 1 || st.Timers.Lag < time.Minute || st.Timers.Lag > 2*time.Minute {
			t.Fatalf("stats %+v", st)
		}
		if len(st.Ready) != 1 || st.Ready[0].Controller != "test/cli" || st.Ready[0].Depth != 2 {
			t.Fatalf("ready queues %+v", st.Ready)
		}
		out := e.run("stats").wantCode(t, 0).stdout
		for _, want := range []string{"flows", "  running", "tick lag", "ready test/cli", "early events"} {
			if !strings.Contains(out, want) {
				t.Errorf("text output lacks %q:\n%s", want, out)
			}
		}
		// --watch prints again every interval; --count stops it.
		r := e.run("stats", "--watch", "--interval", "50ms", "--count", "3", "--json").wantCode(t, 0)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 3 {
			t.Fatalf("--watch --count 3 printed %d lines:\n%s", len(lines), r.stdout)
		}
		for _, l := range lines {
			var s taskflow.Stats
			if err := json.Unmarshal([]byte(l), &s); err != nil || s.Total != 4 {
				t.Fatalf("line %q: %v", l, err)
			}
		}
	})
}

// joinSpace makes a parent waiting on its two children, one of them
// finished, and the relay entry a call leaves when it dies between
// finishing a child and handing its outcome to the parent, past its
// grace (written by hand, key and member as keys.go documents them: the
// hooks that make a call die are not exported). It returns the parent.
func joinSpace(e *testEnv) *taskflow.Flow {
	e.t.Helper()
	ctx := context.Background()
	p := e.running(ownerA, "plan")
	kid := taskflow.CreateManagedInput{ControllerID: "test/kids", Goal: "part", OwnerSessionKey: ownerA}
	if _, err := e.m.StartChildren(ctx, p.ID, []taskflow.ChildInput{{Key: "a", Flow: kid}, {Key: "b", Flow: kid}}); err != nil {
		e.t.Fatal(err)
	}
	p, err := e.m.SetWaiting(ctx, p.ID, taskflow.WaitChildren(taskflow.Join{}))
	if err != nil {
		e.t.Fatal(err)
	}
	a, l, err := e.m.Claim(ctx, "test/kids", "w", time.Minute, taskflow.WithClaimWait(0))
	if err != nil || a == nil {
		e.t.Fatalf("claim %v %v", a, err)
	}
	if _, err := e.m.Finish(ctx, a.ID, nil, taskflow.WithLease(l)); err != nil {
		e.t.Fatal(err)
	}
	s, err := taskflow.NewRedisStore(e.client, taskflow.WithPrefix(e.prefix))
	if err != nil {
		e.t.Fatal(err)
	}
	key := fmt.Sprintf("%s:{%d}:relay", e.prefix, s.ShardOf(a.ID))
	if err := e.client.ZAdd(ctx, key, redis.Z{Score: float64(time.Now().Add(-time.Second).UnixMilli()), Member: "d " + a.ID.String()}).Err(); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// TestStatsJoinsAndRelay: `taskflow stats` shows the parents waiting on
// their children and the relay backlog, and both follow the flow space
// (a tick drives the relay entry; the last child's finish ends the join).
func TestStatsJoinsAndRelay(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		p := joinSpace(e)
		var st taskflow.Stats
		e.runJSON(&st, "stats")
		if st.Joining != 1 || st.Relay != 1 || st.RelayDue != 1 {
			t.Fatalf("stats: joining %d relay %d due %d, want 1 1 1", st.Joining, st.Relay, st.RelayDue)
		}
		line := func(out, label string) string {
			t.Helper()
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, label+"  ") {
					return strings.TrimSpace(strings.TrimPrefix(l, label))
				}
			}
			t.Fatalf("no %q line:\n%s", label, out)
			return ""
		}
		out := e.run("stats").wantCode(t, 0).stdout
		if got := line(out, "parents waiting on children"); got != "1" {
			t.Errorf("parents waiting on children %q, want 1", got)
		}
		if got := line(out, "relay backlog"); got != "1 (due 1)" {
			t.Errorf("relay backlog %q, want \"1 (due 1)\"", got)
		}

		var rep taskflow.TickReport
		e.runJSON(&rep, "tick")
		if rep.Relayed != 1 {
			t.Fatalf("tick relayed %d, want 1", rep.Relayed)
		}
		out = e.run("stats").wantCode(t, 0).stdout
		if got := line(out, "relay backlog"); got != "0 (due 0)" {
			t.Errorf("relay backlog after the tick %q, want \"0 (due 0)\"", got)
		}
		if got := line(out, "parents waiting on children"); got != "1" {
			t.Errorf("parents waiting on children after the tick %q, want 1", got)
		}
		ctx := context.Background()
		b, l, err := e.m.Claim(ctx, "test/kids", "w", time.Minute, taskflow.WithClaimWait(0))
		if err != nil || b == nil {
			t.Fatalf("claim %v %v", b, err)
		}
		if _, err := e.m.Finish(ctx, b.ID, nil, taskflow.WithLease(l)); err != nil {
			t.Fatal(err)
		}
		if got := e.get(p.ID); got.Status != taskflow.StatusRunning {
			t.Fatalf("parent %s after its children finished", got.Status)
		}
		out = e.run("stats").wantCode(t, 0).stdout
		if got := line(out, "parents waiting on children"); got != "0" {
			t.Errorf("parents waiting on children after the join %q, want 0", got)
		}
	})
}

// TestStatsStale: `taskflow stats` counts, per controller, the ready
// flows that have waited for a worker over a minute, and a claimed flow
// leaves the count.
func TestStatsStale(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		// Flows put on their queues two minutes ago (a clock that far
		// back), and one just now.
		past := e.manager(func() time.Time { return time.Now().Add(-2 * time.Minute) })
		for _, ctl := range []string{"test/old", "test/old", "test/mixed"} {
			if _, err := past.CreateMirrored(ctx, taskflow.CreateManagedInput{ControllerID: ctl, Goal: "g", OwnerSessionKey: ownerA}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.m.CreateMirrored(ctx, taskflow.CreateManagedInput{ControllerID: "test/mixed", Goal: "g", OwnerSessionKey: ownerA}); err != nil {
			t.Fatal(err)
		}
		e.running(ownerA, "fresh") // test/cli's queue, just now

		var st taskflow.Stats
		e.runJSON(&st, "stats")
		stale := map[string]int64{}
		for _, q := range st.Ready {
			stale[q.Controller] = q.Stale
		}
		if want := map[string]int64{"test/cli": 0, "test/mixed": 1, "test/old": 2}; fmt.Sprint(stale) != fmt.Sprint(want) ||
			st.ReadyStale != 3 || st.StaleAfter != time.Minute {
			t.Fatalf("stale %v (total %d, after %s), want %v (total 3, after 1m)", stale, st.ReadyStale, st.StaleAfter, want)
		}
		// readyLine is a queue's line less its oldest age, which moves
		// with the clock: "2 (2 waited over 1m0s)".
		readyLine := func(out, ctl string) string {
			t.Helper()
			for _, l := range strings.Split(out, "\n") {
				if f := strings.Fields(l); len(f) > 4 && f[0] == "ready" && f[1] == ctl && f[3] == "(oldest" {
					return f[2] + " (" + strings.Join(f[5:], " ")
				}
			}
			t.Fatalf("no line for the ready queue %s:\n%s", ctl, out)
			return ""
		}
		out := e.run("stats").wantCode(t, 0).stdout
		for ctl, want := range map[string]string{
			"test/old": "2 (2 waited over 1m0s)", "test/mixed": "2 (1 waited over 1m0s)", "test/cli": "1 (0 waited over 1m0s)",
		} {
			if got := readyLine(out, ctl); got != want {
				t.Errorf("ready %s: %q, want %q", ctl, got, want)
			}
		}

		if f, _, err := e.m.Claim(ctx, "test/old", "w", time.Minute, taskflow.WithClaimWait(0)); err != nil || f == nil {
			t.Fatalf("claim %v %v", f, err)
		}
		out = e.run("stats").wantCode(t, 0).stdout
		if got, want := readyLine(out, "test/old"), "1 (1 waited over 1m0s)"; got != want {
			t.Errorf("ready test/old after a claim: %q, want %q", got, want)
		}
	})
}

func TestStatsUsage(t *testing.T) {
	runCLI(t, "stats", "extra").wantCode(t, 2).wantOneLineError(t, "unexpected argument")
	runCLI(t, "stats", "--interval", "0s").wantCode(t, 2).wantOneLineError(t, "--interval")
	runCLI(t, "serve").wantCode(t, 2).wantOneLineError(t, "--metrics")
}

func TestServeMetrics(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		statsSpace(e)
		cmd := exec.Command(binPath, "serve", "--metrics", "127.0.0.1:0", "--redis", e.url, "--prefix", e.prefix)
		cmd.Env = cliEnv()
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill() }()
		outr := bufio.NewReader(stdout)
		line, err := outr.ReadString('\n')
		if err != nil {
			t.Fatalf("no address line: %v; stderr %s", err, stderr.String())
		}
		url := strings.TrimSpace(strings.TrimPrefix(line, "metrics on "))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{
			`taskflow_flows{status="running"} 2`, `taskflow_ready_queue_depth{controller="test/cli"} 2`,
			`taskflow_ready_queue_stale{controller="test/cli"} 0`,
			"taskflow_timers_due 1", "taskflow_stats_up 1", "# TYPE taskflow_tick_lag_seconds gauge", "taskflow_schedules 0",
			"# TYPE taskflow_schedule_fires_total counter",
		} {
			if !strings.Contains(string(body), want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		var rest []byte
		go func() {
			rest, _ = io.ReadAll(outr) // all of stdout before Wait closes it
			done <- cmd.Wait()
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("serve exited with %v after SIGINT; stderr %s", err, stderr.String())
			}
		case <-time.After(5 * time.Second):
			t.Fatal("serve did not stop within 5s of SIGINT")
		}
		// The URL is printed once (stdout), not again as a log line.
		if n := strings.Count(line+string(rest)+stderr.String(), url); n != 1 {
			t.Errorf("the URL %s printed %d times, want once; stdout %q, stderr %q", url, n, line+string(rest), stderr.String())
		}
	})
}
