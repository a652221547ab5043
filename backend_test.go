package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/internal/testbackend"
)

// The same test code runs on every backend of internal/testbackend: an
// embedded miniredis always, a real Redis at TASKFLOW_TEST_REDIS_URL
// (default redis://127.0.0.1:6379/0) when it answers, and a Redis Cluster
// when TASKFLOW_TEST_CLUSTER_ADDRS lists its nodes. With
// TASKFLOW_TEST_REQUIRE_REDIS=1 (CI sets it) an unreachable real Redis
// fails the run instead of being skipped. Each test gets its own key
// prefix and deletes its keys; nothing flushes a shared server.

type backend struct {
	name string
	// client returns a new client for the backend (a new "process").
	client func(t testing.TB) redis.UniversalClient
	// real is true for a real Redis server.
	real bool
	// mini is the embedded server, nil for real ones.
	mini *miniredis.Miniredis
	// evalOnly makes its stores call scripts with EVALSHA (withEvalOnly):
	// the backend "redis-eval" is the real Redis without Redis Functions.
	evalOnly bool
}

// storeOptions returns opts with what the backend adds to every store it
// opens (withEvalOnly for "redis-eval").
func (b backend) storeOptions(opts ...StoreOption) []StoreOption {
	if b.evalOnly {
		return append(opts[:len(opts):len(opts)], withEvalOnly())
	}
	return opts
}

func realRedisOptions() (*redis.Options, error) { return testbackend.RealOptions() }

// backends returns the backends to run on. The real Redis runs twice:
// "redis" calls the library of Redis Functions, "redis-eval" the scripts
// (EVALSHA), as on a server before 7.0; the cluster runs Functions,
// miniredis (which has none) EVALSHA.
func backends(t testing.TB) []backend {
	t.Helper()
	var out []backend
	for _, b := range testbackend.List(t) {
		out = append(out, backend{name: b.Name, client: b.Client, real: b.Real, mini: b.Mini})
		if b.Name == "redis" {
			out = append(out, backend{name: "redis-eval", client: b.Client, real: b.Real, mini: b.Mini, evalOnly: true})
		}
	}
	return out
}

func clusterAddrs() []string { return testbackend.ClusterAddrs() }

// scanAll calls fn with every key matching pattern, on every master of a
// cluster (concurrently: fn must be safe for that).
func scanAll(ctx context.Context, c redis.UniversalClient, pattern string, fn func(node redis.Cmdable, keys []string)) error {
	return testbackend.ScanAll(ctx, c, pattern, fn)
}

func TestMain(m *testing.M) {
	// The fault tests stop servers on purpose; go-redis would log every
	// failed dial.
	redis.SetLogger(silentLogger{})
	os.Exit(m.Run())
}

type silentLogger struct{}

func (silentLogger) Printf(context.Context, string, ...any) {}

// fakeClock is the settable clock of internal/testbackend, for the store
// and engine.
type fakeClock = testbackend.Clock

func newFakeClock() *fakeClock { return testbackend.NewClock() }

// env is one test's view of one backend.
type env struct {
	t       testing.TB
	b       backend
	client  redis.UniversalClient
	prefix  string
	clock   *fakeClock
	store   *RedisStore
	m       *Manager
	ctx     context.Context
	options []StoreOption
}

func randomPrefix() string { return testbackend.Prefix("tftest") }

// newEnv opens a store with a fresh prefix on b and deletes the prefix's
// keys when the test ends.
func newEnv(t testing.TB, b backend, opts ...StoreOption) *env {
	t.Helper()
	e := &env{t: t, b: b, client: b.client(t), prefix: randomPrefix(), clock: newFakeClock(), ctx: context.Background()}
	e.options = b.storeOptions(append([]StoreOption{WithPrefix(e.prefix), WithClock(e.clock.Now)}, opts...)...)
	e.store = e.reopenStore(e.client)
	e.m = NewManager(e.store)
	t.Cleanup(func() { deletePrefix(t, b, e.prefix) })
	return e
}

// reopenStore opens another store on the same flow space.
func (e *env) reopenStore(c redis.UniversalClient) *RedisStore {
	e.t.Helper()
	s, err := NewRedisStore(c, e.options...)
	if err != nil {
		e.t.Fatalf("NewRedisStore: %v", err)
	}
	return s
}

func deletePrefix(t testing.TB, b backend, prefix string) {
	_ = testbackend.DeleteKeys(context.Background(), b.client(t), prefix)
}

// dump returns every key of the prefix with a rendering of its value, to
// prove that a refused call changed nothing.
func (e *env) dump() map[string]string {
	e.t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	all, err := testbackend.Keys(ctx, e.client, e.prefix+":*")
	if err != nil {
		e.t.Fatal(err)
	}
	for _, k := range all {
		typ := e.client.Type(ctx, k).Val()
		var v string
		switch typ {
		case "hash":
			m := e.client.HGetAll(ctx, k).Val()
			parts := make([]string, 0, len(m))
			for f, x := range m {
				parts = append(parts, f+"="+x)
			}
			sort.Strings(parts)
			v = strings.Join(parts, "\x1f")
		case "zset":
			zs := e.client.ZRangeWithScores(ctx, k, 0, -1).Val()
			for _, z := range zs {
				v += z.Member.(string) + "@" + formatScore(z.Score) + "\x1f"
			}
		case "list":
			v = strings.Join(e.client.LRange(ctx, k, 0, -1).Val(), "\x1f")
		case "set":
			m := e.client.SMembers(ctx, k).Val()
			sort.Strings(m)
			v = strings.Join(m, "\x1f")
		default:
			v = typ
		}
		out[k] = typ + ":" + v
	}
	return out
}

// sameDump fails the test when Redis differs from the dump before.
func (e *env) sameDump(t *testing.T, before map[string]string, what string) {
	t.Helper()
	if after := e.dump(); !reflect.DeepEqual(before, after) {
		t.Fatalf("%s changed Redis", what)
	}
}

func formatScore(f float64) string { return time.UnixMilli(int64(f)).UTC().Format(time.RFC3339Nano) }

// forEachBackend runs fn as a subtest on every backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, e *env), opts ...StoreOption) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			fn(t, newEnv(t, b, opts...))
		})
	}
}

func seedInput() CreateManagedInput {
	return CreateManagedInput{
		ControllerID:    "kate/bible-upload",
		Goal:            "upload chapter 1",
		OwnerSessionKey: "agent:kate:session:abc",
		RequesterOrigin: "user-1",
		CurrentStep:     "verse-0",
		State:           map[string]any{"verses_done": 0, "total": 31},
	}
}

// outcome carries a call's two results into must.
type outcome[T any] struct {
	v   T
	err error
}

func try[T any](v T, err error) outcome[T] { return outcome[T]{v, err} }

// must fails the test on an error and returns the value.
func must[T any](t testing.TB, o outcome[T]) T {
	t.Helper()
	if o.err != nil {
		t.Fatalf("unexpected error: %v", o.err)
	}
	return o.v
}

func stateOf(t testing.TB, f *Flow) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(f.State, &m); err != nil {
		t.Fatalf("state %s: %v", f.State, err)
	}
	return m
}

func wantErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (e *env) engine(opts ...EngineOption) *WaitEngine {
	return NewWaitEngine(e.m, append([]EngineOption{WithLogger(quietLogger())}, opts...)...)
}

// waitingFlow creates a running flow and puts it on wait.
func (e *env) waitingFlow(t testing.TB, wait any) *Flow {
	t.Helper()
	f := must(t, try(e.m.CreateMirrored(e.ctx, seedInput())))
	return must(t, try(e.m.SetWaiting(e.ctx, f.ID, wait)))
}

func eventKinds(t testing.TB, e *env, id uuid.UUID) []EventKind {
	t.Helper()
	var out []EventKind
	for _, ev := range must(t, try(e.m.ListEvents(e.ctx, id, 1000))) {
		out = append(out, ev.Kind)
	}
	return out
}

func countKind(kinds []EventKind, k EventKind) int {
	n := 0
	for _, x := range kinds {
		if x == k {
			n++
		}
	}
	return n
}

// mustVerify fails the test when Verify finds a problem.
func mustVerify(t *testing.T, e *env) {
	t.Helper()
	rep, err := e.store.verify(e.ctx)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !rep.OK() {
		t.Fatalf("Verify found problems: %+v", rep.Problems)
	}
}

// tcpProxy listens on a loopback port and, for each connection it
// accepts, dials upstream and hands both ends to its pipe, which copies
// between them (counting each goroutine it starts in wg). The tests'
// faulty links (dropProxy, lagLink) are pipes; the proxy stops, and waits
// for its pipes, when the test ends.
type tcpProxy struct {
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup
}

func startTCPProxy(t testing.TB, upstream string, pipe func(client, server net.Conn, wg *sync.WaitGroup)) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, upstream: upstream}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", upstream)
			if err != nil {
				_ = client.Close()
				continue
			}
			pipe(client, server, &p.wg)
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); p.wg.Wait() })
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }
