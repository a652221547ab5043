package natsbridge

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/internal/testbackend"
)

// The tests use the NATS server at TASKFLOW_TEST_NATS_URL (default
// nats://127.0.0.1:4222, JetStream on; .ci/run starts one), skipped when
// it does not answer unless TASKFLOW_TEST_REQUIRE_NATS=1. The server is
// shared: each test uses its own subject, stream and consumer and deletes
// them. The Redis side runs on every backend: miniredis, the real Redis
// (TASKFLOW_TEST_REDIS_URL, default redis://127.0.0.1:6379/0) and the
// cluster of TASKFLOW_TEST_CLUSTER_ADDRS.

func natsURL() string {
	if u := os.Getenv("TASKFLOW_TEST_NATS_URL"); u != "" {
		return u
	}
	return nats.DefaultURL
}

func connectNATS(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(natsURL(), nats.Timeout(2*time.Second))
	if err != nil {
		if os.Getenv("TASKFLOW_TEST_REQUIRE_NATS") == "1" {
			t.Fatalf("NATS required (TASKFLOW_TEST_REQUIRE_NATS=1) but unreachable at %s: %v", natsURL(), err)
		}
		t.Skipf("NATS unreachable at %s: %v", natsURL(), err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func token() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// names are one test's NATS names; the stream is deleted at the end.
type names struct{ subject, stream, durable string }

func newNames(t testing.TB, nc *nats.Conn) names {
	n := names{subject: "tftest." + token() + ".taskflow.resume", stream: "TFTEST_" + strings.ToUpper(token()), durable: "tftest-" + token()}
	t.Cleanup(func() {
		js, err := jetstream.New(nc)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, n.stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("deleting stream %s: %v", n.stream, err)
		}
	})
	return n
}

// redisTarget names a Redis backend so a child process can reach it too.
type redisTarget struct {
	name  string
	url   string   // a single server
	addrs []string // a cluster
}

func (r redisTarget) client() redis.UniversalClient {
	if len(r.addrs) > 0 {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: r.addrs})
	}
	opts, _ := redis.ParseURL(r.url)
	return redis.NewClient(opts)
}

func (r redisTarget) env() string {
	if len(r.addrs) > 0 {
		return "cluster:" + strings.Join(r.addrs, ",")
	}
	return r.url
}

func targetFromEnv(s string) redisTarget {
	if rest, ok := strings.CutPrefix(s, "cluster:"); ok {
		return redisTarget{name: "cluster", addrs: strings.Split(rest, ",")}
	}
	return redisTarget{name: "redis", url: s}
}

// targets returns the backends of internal/testbackend as targets.
func targets(t *testing.T) []redisTarget {
	t.Helper()
	var out []redisTarget
	for _, b := range testbackend.List(t) {
		if b.Name == "cluster" {
			out = append(out, redisTarget{name: b.Name, addrs: testbackend.ClusterAddrs()})
			continue
		}
		out = append(out, redisTarget{name: b.Name, url: b.URL})
	}
	return out
}

// space is a flow space on a target with a fresh prefix, deleted at the end.
type space struct {
	client redis.UniversalClient
	prefix string
	m      *taskflow.Manager
}

func openSpace(t testing.TB, target redisTarget, prefix string) *space {
	t.Helper()
	c := target.client()
	s, err := taskflow.NewRedisStore(c, taskflow.WithPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	sp := &space{client: c, prefix: prefix, m: taskflow.NewManager(s)}
	t.Cleanup(func() {
		_ = sp.m.Close()
		_ = testbackend.DeleteKeys(context.Background(), c, prefix)
		c.Close()
	})
	return sp
}

// waitingFlow creates a flow waiting for (topic, corr).
func (sp *space) waitingFlow(t testing.TB, topic, corr string) *taskflow.Flow {
	t.Helper()
	ctx := context.Background()
	f, err := sp.m.CreateMirrored(ctx, taskflow.CreateManagedInput{ControllerID: "nats/test", Goal: "wait", OwnerSessionKey: "agent:n:session:1"})
	if err == nil {
		f, err = sp.m.SetWaiting(ctx, f.ID, taskflow.WaitExternalEvent(topic, corr))
	}
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// startEngine runs a resume bridge of the flow space until the test ends.
func (sp *space) startEngine(t testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	eng := taskflow.NewWaitEngine(sp.m, taskflow.WithBridgeBlock(50*time.Millisecond), taskflow.WithLogger(quiet()))
	done := make(chan struct{})
	go func() { defer close(done); _ = eng.RunResumeBridge(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// waitStatus waits until the flow has status.
func (sp *space) waitStatus(t testing.TB, id uuid.UUID, status taskflow.FlowStatus, within time.Duration) *taskflow.Flow {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		f, err := sp.m.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if f.Status == status {
			return f
		}
		if time.Now().After(deadline) {
			t.Fatalf("flow %s is %s after %s, want %s", id, f.Status, within, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// originalMessage is a resume message as the original's broker writes it.
func originalMessage(flowID, topic, corr string, payload any) []byte {
	return originalMessageWithID(uuid.NewString(), flowID, topic, corr, payload)
}

// originalMessageWithID is originalMessage under the message id id.
func originalMessageWithID(id, flowID, topic, corr string, payload any) []byte {
	b, _ := json.Marshal(map[string]any{
		"id": id, "timestamp": time.Now().UTC().Format(time.RFC3339Nano),
		"topic": "taskflow.resume", "source": "nexo", "session_id": nil,
		"payload": map[string]any{"flow_id": flowID, "topic": topic, "correlation_id": corr, "payload": payload},
	})
	return b
}

// runBridge runs a bridge until the test ends and returns it once its
// consumer or subscription is in place.
func runBridge(t testing.TB, nc *nats.Conn, pub Publisher, n names, opts ...Option) *Bridge {
	t.Helper()
	opts = append([]Option{WithSubject(n.subject), WithStream(n.stream), WithDurable(n.durable), WithLogger(quiet())}, opts...)
	b, err := New(nc, pub, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	b.onReady = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("bridge stopped with %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		done <- err // for the cleanup
		t.Fatalf("the bridge did not start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the bridge did not start within 10 s")
	}
	return b
}

func TestParseMessage(t *testing.T) {
	id := uuid.New()
	req, err := ParseMessage(originalMessage(id.String(), "mail", "m-1", map[string]int{"n": 1}))
	if err != nil || req.FlowID != id || req.Topic != "mail" || req.CorrelationID != "m-1" || string(req.Payload.(json.RawMessage)) != `{"n":1}` {
		t.Fatalf("envelope: %+v %v", req, err)
	}
	var env map[string]any
	_ = json.Unmarshal(originalMessage(id.String(), "t", "c", nil), &env)
	if req, err := ParseMessage(mustJSON(env)); err != nil || req.ID != env["id"] {
		t.Fatalf("the envelope's id %v is not the request's: %+v %v", env["id"], req, err)
	}
	env["id"] = "order:42 attempt"
	if req, err := ParseMessage(mustJSON(env)); err != nil || !strings.HasPrefix(req.ID, "nats-") || len(req.ID) != 37 {
		t.Fatalf("an id that is no UUID: %+v %v", req, err)
	}
	req, err = ParseMessage([]byte(`{"flow_id":"{` + id.String() + `}","topic":"t","correlation_id":"c","payload":null}`))
	if err != nil || req.FlowID != id || req.Payload != nil {
		t.Fatalf("bare resume with a braced id: %+v %v", req, err)
	}
	if req, err = ParseMessage(originalMessage("urn:uuid:"+id.String(), "t", "c", nil)); err != nil || req.FlowID != id {
		t.Fatalf("URN id: %+v %v", req, err)
	}
	for name, body := range map[string]string{
		"not JSON":         `hello`,
		"array":            `[1]`,
		"no payload":       `{"id":"x","topic":"taskflow.resume"}`,
		"payload a string": `{"payload":"flow"}`,
		"no flow id":       `{"payload":{"topic":"t","correlation_id":"c"}}`,
		"bad flow id":      `{"payload":{"flow_id":"nope","topic":"t","correlation_id":"c"}}`,
		"nil flow id":      `{"payload":{"flow_id":"00000000-0000-0000-0000-000000000000","topic":"t","correlation_id":"c"}}`,
		"no topic":         `{"payload":{"flow_id":"` + id.String() + `","correlation_id":"c"}}`,
		"empty corr":       `{"payload":{"flow_id":"` + id.String() + `","topic":"t","correlation_id":" "}}`,
	} {
		if _, err := ParseMessage([]byte(body)); !errors.Is(err, taskflow.ErrInvalidData) {
			t.Errorf("%s: %v, want ErrInvalidData", name, err)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	nc := &nats.Conn{}
	if _, err := New(nil, &taskflow.Manager{}); !errors.Is(err, taskflow.ErrInvalidData) {
		t.Errorf("nil conn: %v", err)
	}
	if _, err := New(nc, &taskflow.Manager{}, WithMode("sometimes")); !errors.Is(err, taskflow.ErrInvalidData) {
		t.Errorf("bad mode: %v", err)
	}
	if _, err := New(nc, &taskflow.Manager{}, WithSubject(" ")); !errors.Is(err, taskflow.ErrInvalidData) {
		t.Errorf("empty subject: %v", err)
	}
}

// TestBridgeResumesFlows: a message published as the original publishes
// it resumes the flow it names, through JetStream and through core NATS;
// a malformed one (or one over the store's label bound) is dropped and
// does not block the next.
func TestBridgeResumesFlows(t *testing.T) {
	nc := connectNATS(t)
	for _, target := range targets(t) {
		for _, mode := range []Mode{ModeAuto, ModeCore} {
			t.Run(target.name+"/"+string(mode), func(t *testing.T) {
				n := newNames(t, nc)
				sp := openSpace(t, target, "tfnats-test-"+token())
				sp.startEngine(t)
				f := sp.waitingFlow(t, "mail.reply", "msg-1")
				b := runBridge(t, nc, sp.m, n, WithMode(mode))
				if err := nc.Publish(n.subject, []byte(`{"payload":{"flow_id":"bad"}}`)); err != nil {
					t.Fatal(err)
				}
				// A correlation id over the store's label bound: refused by
				// PublishResume, dropped as malformed.
				long := strings.Repeat("c", taskflow.DefaultLimits().LabelBytes+1)
				if err := nc.Publish(n.subject, originalMessage(f.ID.String(), "mail.reply", long, nil)); err != nil {
					t.Fatal(err)
				}
				if err := nc.Publish(n.subject, originalMessage(f.ID.String(), "mail.reply", "msg-1", map[string]string{"body": "yes"})); err != nil {
					t.Fatal(err)
				}
				got := sp.waitStatus(t, f.ID, taskflow.StatusRunning, 10*time.Second)
				var state map[string]any
				_ = json.Unmarshal(got.State, &state)
				if ev, _ := state["resume_event"].(map[string]any); ev["body"] != "yes" {
					t.Fatalf("state after the resume: %s", got.State)
				}
				if st := b.Stats(); st.Received != 3 || st.Malformed != 2 || st.HandedOff != 1 {
					t.Fatalf("stats: %+v", st)
				}
				if mode == ModeAuto {
					// Acknowledged: the work-queue stream is empty.
					js, _ := jetstream.New(nc)
					s, err := js.Stream(context.Background(), n.stream)
					if err != nil {
						t.Fatal(err)
					}
					deadline := time.Now().Add(5 * time.Second)
					for {
						info, err := s.Info(context.Background())
						if err != nil {
							t.Fatal(err)
						}
						if info.State.Msgs == 0 {
							break
						}
						if time.Now().After(deadline) {
							t.Fatalf("%d messages left in the stream", info.State.Msgs)
						}
						time.Sleep(20 * time.Millisecond)
					}
				}
			})
		}
	}
}

// TestBridgeHandsOffOncePerMessageID: one message sent three times (a
// publisher's retries; one after the flow waits again on the same
// correlation id) resumes the flow once, through JetStream and core NATS.
func TestBridgeHandsOffOncePerMessageID(t *testing.T) {
	nc := connectNATS(t)
	for _, target := range targets(t) {
		for _, mode := range []Mode{ModeAuto, ModeCore} {
			t.Run(target.name+"/"+string(mode), func(t *testing.T) {
				ctx := context.Background()
				n := newNames(t, nc)
				sp := openSpace(t, target, "tfnats-test-"+token())
				sp.startEngine(t)
				f := sp.waitingFlow(t, "pay", "order-7")
				runBridge(t, nc, sp.m, n, WithMode(mode))
				msg := originalMessageWithID(uuid.NewString(), f.ID.String(), "pay", "order-7", "approved")
				for i := 0; i < 2; i++ {
					if err := nc.Publish(n.subject, msg); err != nil {
						t.Fatal(err)
					}
				}
				sp.waitStatus(t, f.ID, taskflow.StatusRunning, 10*time.Second)
				w, err := sp.m.SetWaiting(ctx, f.ID, taskflow.WaitExternalEvent("pay", "order-7"))
				if err != nil {
					t.Fatal(err)
				}
				if err := nc.Publish(n.subject, msg); err != nil {
					t.Fatal(err)
				}
				// A later message: once it resumed its flow, the bridge
				// and the engine (each in order) handled the repeat.
				g := sp.waitingFlow(t, "pay", "order-8")
				if err := nc.Publish(n.subject, originalMessage(g.ID.String(), "pay", "order-8", nil)); err != nil {
					t.Fatal(err)
				}
				sp.waitStatus(t, g.ID, taskflow.StatusRunning, 10*time.Second)
				if got, err := sp.m.Get(ctx, f.ID); err != nil || got.Status != taskflow.StatusWaiting || got.Revision != w.Revision {
					t.Fatalf("a repeated message resumed the flow again: %+v %v", got, err)
				}
			})
		}
	}
}

// TestBridgeKilledBeforeHandoff kills a bridge process between receiving
// a message and handing it to Redis. With JetStream the message is
// delivered again to the next bridge and the flow resumes; with core NATS
// it is lost, as the README says.
func TestBridgeKilledBeforeHandoff(t *testing.T) {
	nc := connectNATS(t)
	for _, target := range targets(t) {
		for _, mode := range []Mode{ModeJetStream, ModeCore} {
			t.Run(target.name+"/"+string(mode), func(t *testing.T) {
				n := newNames(t, nc)
				prefix := "tfnats-test-" + token()
				sp := openSpace(t, target, prefix)
				f := sp.waitingFlow(t, "mail.reply", "msg-9")

				child := exec.Command(os.Args[0], "-test.run=^TestHelperBridgeProcess$", "-test.v")
				child.Env = append(os.Environ(), "TFNATS_CHILD=1", "TFNATS_REDIS="+target.env(), "TFNATS_PREFIX="+prefix,
					"TFNATS_SUBJECT="+n.subject, "TFNATS_STREAM="+n.stream, "TFNATS_DURABLE="+n.durable, "TFNATS_MODE="+string(mode))
				out, err := child.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				child.Stderr = os.Stderr
				if err := child.Start(); err != nil {
					t.Fatal(err)
				}
				lines := bufio.NewScanner(out)
				ready := false
				for lines.Scan() {
					if strings.Contains(lines.Text(), "BRIDGE READY") {
						ready = true
						break
					}
				}
				if !ready {
					_ = child.Process.Kill()
					_ = child.Wait()
					t.Fatal("the bridge process did not start")
				}
				go func() { _, _ = io.Copy(io.Discard, out) }()
				if err := nc.Publish(n.subject, originalMessage(f.ID.String(), "mail.reply", "msg-9", nil)); err != nil {
					t.Fatal(err)
				}
				err = child.Wait()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("the bridge process was not killed at the hook: %v", err)
				}
				// Nothing reached Redis.
				sp.startEngine(t)
				time.Sleep(300 * time.Millisecond)
				if got, _ := sp.m.Get(context.Background(), f.ID); got.Status != taskflow.StatusWaiting {
					t.Fatalf("the flow moved before any hand-off: %s", got.Status)
				}
				// The next bridge.
				b := runBridge(t, nc, sp.m, n, WithMode(mode), WithAckWait(time.Second))
				if mode == ModeCore {
					time.Sleep(2 * time.Second)
					if got, _ := sp.m.Get(context.Background(), f.ID); got.Status != taskflow.StatusWaiting || b.Stats().Received != 0 {
						t.Fatalf("core NATS redelivered a message: %s, %+v", got.Status, b.Stats())
					}
					return // lost, as documented
				}
				sp.waitStatus(t, f.ID, taskflow.StatusRunning, 15*time.Second)
				if st := b.Stats(); st.HandedOff != 1 {
					t.Fatalf("stats of the next bridge: %+v", st)
				}
			})
		}
	}
}

// TestHelperBridgeProcess is the bridge process TestBridgeKilledBeforeHandoff
// starts: it kills itself with SIGKILL when it has received a message and
// not yet handed it off.
func TestHelperBridgeProcess(t *testing.T) {
	if os.Getenv("TFNATS_CHILD") != "1" {
		t.Skip("a helper process for TestBridgeKilledBeforeHandoff")
	}
	nc, err := nats.Connect(natsURL())
	if err != nil {
		t.Fatal(err)
	}
	target := targetFromEnv(os.Getenv("TFNATS_REDIS"))
	c := target.client()
	s, err := taskflow.NewRedisStore(c, taskflow.WithPrefix(os.Getenv("TFNATS_PREFIX")))
	if err != nil {
		t.Fatal(err)
	}
	mode := Mode(os.Getenv("TFNATS_MODE"))
	b, err := New(nc, taskflow.NewManager(s), WithSubject(os.Getenv("TFNATS_SUBJECT")), WithStream(os.Getenv("TFNATS_STREAM")),
		WithDurable(os.Getenv("TFNATS_DURABLE")), WithMode(mode), WithAckWait(time.Second), WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	b.beforeHandoff = func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL); select {} }
	b.onReady = func() { fmt.Println("BRIDGE READY") }
	t.Fatalf("the bridge returned: %v", b.Run(context.Background()))
}

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
