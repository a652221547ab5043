package natsbridge

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/taskflow-dev/taskflow"
)

// startCoreNATS starts a private nats-server without JetStream on a free
// loopback port and returns its URL; it is stopped when the test ends.
// The test is skipped when nats-server is not installed, unless
// TASKFLOW_TEST_REQUIRE_NATS=1.
func startCoreNATS(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if os.Getenv("TASKFLOW_TEST_REQUIRE_NATS") == "1" {
			t.Fatal("nats-server is not installed")
		}
		t.Skip("nats-server is not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-l", t.TempDir()+"/nats.log")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if nc, err := nats.Connect(url); err == nil {
			nc.Close()
			return url
		}
		if time.Now().After(deadline) {
			t.Fatalf("the private nats-server did not start on %s", url)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAutoFallsBackToCore: on a server without JetStream, ModeAuto reads
// with core NATS and still hands messages off; ModeJetStream refuses to
// start.
func TestAutoFallsBackToCore(t *testing.T) {
	url := startCoreNATS(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, target := range targets(t) {
		t.Run(target.name, func(t *testing.T) {
			sp := openSpace(t, target, "tfnats-test-"+token())
			sp.startEngine(t)
			f := sp.waitingFlow(t, "mail.reply", "msg-3")
			n := names{subject: DefaultSubject, stream: DefaultStream, durable: DefaultDurable}
			b := runBridge(t, nc, sp.m, n) // ModeAuto
			if err := nc.Publish(DefaultSubject, originalMessage(f.ID.String(), "mail.reply", "msg-3", nil)); err != nil {
				t.Fatal(err)
			}
			sp.waitStatus(t, f.ID, taskflow.StatusRunning, 10*time.Second)
			if st := b.Stats(); st.HandedOff != 1 {
				t.Fatalf("stats: %+v", st)
			}

			js, err := New(nc, sp.m, WithMode(ModeJetStream), WithLogger(quiet()))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := js.Run(ctx); err == nil || !strings.Contains(err.Error(), "has no JetStream") {
				t.Fatalf("ModeJetStream on a server without JetStream: %v", err)
			}
		})
	}
}
