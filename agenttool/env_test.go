package agenttool

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/internal/testbackend"
)

// The tool's tests run on every backend of internal/testbackend: an
// embedded miniredis always, the real Redis when it answers, and the
// cluster when TASKFLOW_TEST_CLUSTER_ADDRS lists it. Each test works
// under its own key prefix and deletes its keys.

// env is one test's view of one backend: a store with a fresh prefix and
// a settable clock, and its manager.
type env struct {
	t      testing.TB
	client redis.UniversalClient
	prefix string
	clock  *testbackend.Clock
	store  *taskflow.RedisStore
	m      *taskflow.Manager
	ctx    context.Context
}

// forEachBackend runs fn as a subtest on every backend, each with its own
// env.
func forEachBackend(t *testing.T, fn func(t *testing.T, e *env)) {
	testbackend.Each(t, func(t *testing.T, b testbackend.Backend) {
		e := &env{t: t, client: b.Client(t), prefix: testbackend.Prefix("tftool"), clock: testbackend.NewClock(), ctx: context.Background()}
		testbackend.CleanupKeys(t, e.client, e.prefix)
		s, err := taskflow.NewRedisStore(e.client, taskflow.WithPrefix(e.prefix), taskflow.WithClock(e.clock.Now))
		if err != nil {
			t.Fatalf("NewRedisStore: %v", err)
		}
		e.store, e.m = s, taskflow.NewManager(s)
		fn(t, e)
	})
}

// engine returns a wait engine on the env's manager that logs nothing.
func (e *env) engine(opts ...taskflow.EngineOption) *taskflow.WaitEngine {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	return taskflow.NewWaitEngine(e.m, append([]taskflow.EngineOption{taskflow.WithLogger(quiet)}, opts...)...)
}

// dump returns every key of the prefix with a rendering of its value (of
// hashes, sorted sets, lists and sets; other types by their type only), to
// prove that a refused call changed nothing.
func (e *env) dump() map[string]string {
	e.t.Helper()
	ctx := context.Background()
	all, err := testbackend.Keys(ctx, e.client, e.prefix+":*")
	if err != nil {
		e.t.Fatal(err)
	}
	out := make(map[string]string, len(all))
	for _, k := range all {
		typ := e.client.Type(ctx, k).Val()
		var parts []string
		switch typ {
		case "hash":
			for f, x := range e.client.HGetAll(ctx, k).Val() {
				parts = append(parts, f+"="+x)
			}
			sort.Strings(parts)
		case "zset":
			for _, z := range e.client.ZRangeWithScores(ctx, k, 0, -1).Val() {
				parts = append(parts, z.Member.(string)+"@"+time.UnixMilli(int64(z.Score)).UTC().Format(time.RFC3339Nano))
			}
		case "list":
			parts = e.client.LRange(ctx, k, 0, -1).Val()
		case "set":
			parts = e.client.SMembers(ctx, k).Val()
			sort.Strings(parts)
		}
		out[k] = typ + ":" + strings.Join(parts, "\x1f")
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

// mustVerify fails the test when the store's consistency check finds a
// problem.
func mustVerify(t *testing.T, e *env) {
	t.Helper()
	rep, err := e.m.Verify(e.ctx)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !rep.OK() {
		t.Fatalf("Verify found problems: %+v", rep.Problems)
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
