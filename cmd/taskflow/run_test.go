package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/clitext"
)

func TestRunStopsOnSIGINT(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		due := e.waiting(ownerA, taskflow.WaitTimer(time.Now().Add(-time.Second)))
		ext := e.waiting(ownerA, taskflow.WaitExternalEvent("webhook", "order-1"))
		if err := e.m.PublishResume(ctx, taskflow.ResumeRequest{FlowID: ext.ID, Topic: "webhook", CorrelationID: "order-1"}); err != nil {
			t.Fatal(err)
		}

		cmd := exec.Command(binPath, "run", "--interval", "100ms", "--redis", e.url, "--prefix", e.prefix)
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
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Wait until the bridge resumed the external flow too.
		deadline := time.After(10 * time.Second)
		var last map[string]any
		for bridged := false; !bridged; {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatalf("run ended early: %s", stderr.String())
				}
				if err := json.Unmarshal([]byte(line), &last); err != nil {
					t.Fatalf("not a JSON line: %q", line)
				}
				b, _ := last["bridge"].(map[string]any)
				bridged = b["resumed"] == float64(1)
			case <-deadline:
				_ = cmd.Process.Kill()
				t.Fatalf("no bridge resume within 10s; last line %v; stderr %s", last, stderr.String())
			}
		}
		start := time.Now()
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		go func() {
			for range lines {
			}
		}()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run exited with %v after SIGINT; stderr %s", err, stderr.String())
			}
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatal("run did not stop within 5s of SIGINT")
		}
		t.Logf("run stopped %s after SIGINT", time.Since(start).Round(time.Millisecond))
		for _, id := range []uuid.UUID{due.ID, ext.ID} {
			if st := e.get(id).Status; st != taskflow.StatusRunning {
				t.Fatalf("flow %s is %s, want running", id, st)
			}
		}
	})
}

// TestRunLiveLine runs the engine on a pseudo-terminal (util-linux
// script) until timeout sends SIGINT: the status line, rewritten in place
// and under 80 columns, counts the expired lease.
func TestRunLiveLine(t *testing.T) {
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("script (util-linux) not installed")
	}
	eachBackend(t, func(t *testing.T, e *testEnv) {
		e.running(ownerA, "stalls")
		if _, _, err := e.m.Claim(context.Background(), "test/cli", "w", minLease, taskflow.WithClaimWait(time.Second)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * minLease)
		line := strings.Join([]string{"timeout", "--preserve-status", "-s", "INT", "2", binPath, "run", "--interval", "100ms",
			"--redis", clitext.ShellQuote(e.url), "--prefix", e.prefix}, " ")
		cmd := exec.Command("script", "-qec", line, "/dev/null")
		cmd.Env = append(cliEnv(), "TERM=xterm")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%q", line, err, out)
		}
		frames := strings.Split(string(out), "\r\033[K")
		last := strings.TrimSpace(frames[len(frames)-1])
		if len(frames) < 2 || !strings.Contains(last, "expired 1") || !strings.HasPrefix(last, "ticks ") || len(last) > 80 {
			t.Fatalf("last status line %q of:\n%q", last, out)
		}
	})
}
