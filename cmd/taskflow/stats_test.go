package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

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
			"taskflow_timers_due 1", "taskflow_stats_up 1", "# TYPE taskflow_tick_lag_seconds gauge",
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
