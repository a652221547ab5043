package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/taskflow-dev/taskflow"
)

// TestRunNATS runs 'taskflow run --nats' against the NATS server at
// TASKFLOW_TEST_NATS_URL (default nats://127.0.0.1:4222; skipped when it
// does not answer, unless TASKFLOW_TEST_REQUIRE_NATS=1) and publishes a
// resume message as the original does: the waiting flow resumes. Each run
// uses its own subject, stream and consumer, deleted afterwards.
func TestRunNATS(t *testing.T) {
	url := os.Getenv("TASKFLOW_TEST_NATS_URL")
	if url == "" {
		url = nats.DefaultURL
	}
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		if os.Getenv("TASKFLOW_TEST_REQUIRE_NATS") == "1" {
			t.Fatalf("NATS required but unreachable at %s: %v", url, err)
		}
		t.Skipf("NATS unreachable at %s: %v", url, err)
	}
	defer nc.Close()
	eachBackend(t, func(t *testing.T, e *testEnv) {
		tok := strings.ReplaceAll(uuid.NewString()[:13], "-", "")
		subject, stream, durable := "tfclitest."+tok+".taskflow.resume", "TFCLITEST_"+strings.ToUpper(tok), "tfclitest-"+tok
		t.Cleanup(func() {
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := js.DeleteStream(ctx, stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				t.Errorf("deleting stream %s: %v", stream, err)
			}
		})
		ext := e.waiting(ownerA, taskflow.WaitExternalEvent("mail.reply", "msg-1"))

		cmd := exec.Command(binPath, "run", "--interval", "100ms", "--redis", e.url, "--prefix", e.prefix,
			"--nats", url, "--nats-subject", subject, "--nats-stream", stream, "--nats-durable", durable)
		cmd.Env = cliEnv()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		cmd.Stdout = &bytes.Buffer{}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		// The bridge logs once its consumer is in place.
		js, _ := jetstream.New(nc)
		deadline := time.Now().Add(10 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := js.Consumer(ctx, stream, durable)
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no consumer %s after 10 s: %v; stderr %s", durable, err, stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		body, _ := json.Marshal(map[string]any{
			"id": uuid.NewString(), "timestamp": time.Now().UTC().Format(time.RFC3339Nano), "topic": "taskflow.resume",
			"source": "nexo", "session_id": nil,
			"payload": map[string]any{"flow_id": ext.ID.String(), "topic": "mail.reply", "correlation_id": "msg-1", "payload": map[string]int{"n": 1}},
		})
		if err := nc.Publish(subject, body); err != nil {
			t.Fatal(err)
		}
		for e.get(ext.ID).Status != taskflow.StatusRunning {
			if time.Now().After(deadline.Add(10 * time.Second)) {
				t.Fatalf("the flow did not resume; stderr %s", stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("run exited with %v; stderr %s", err, stderr.String())
		}
		if !strings.Contains(stderr.String(), "JetStream") {
			t.Errorf("run did not say it reads with JetStream; stderr %s", stderr.String())
		}
	})
}

func TestRunNATSUnreachable(t *testing.T) {
	e := newTestEnv(t, "redis://"+miniredis.RunT(t).Addr()+"/0")
	e.create(ownerA, "a flow space that exists, so run warns of nothing")
	r := e.run("run", "--nats", "nats://127.0.0.1:1")
	r.wantCode(t, 1).wantOneLineError(t, "cannot reach NATS at nats://127.0.0.1:1")
}
