package taskflow

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// The same test code runs on every backend: an embedded miniredis always,
// a real Redis at TASKFLOW_TEST_REDIS_URL (default
// redis://127.0.0.1:6379/0) when it answers, and a Redis Cluster when
// TASKFLOW_TEST_CLUSTER_ADDRS lists its nodes (comma-separated; .ci/run
// starts one with .ci/cluster.sh). With TASKFLOW_TEST_REQUIRE_REDIS=1 (CI
// sets it) an unreachable real Redis fails the run instead of being
// skipped. Each test gets its own key prefix and deletes its keys; nothing
// flushes a shared server.

type backend struct {
	name string
	// client returns a new client for the backend (a new "process").
	client func(t testing.TB) redis.UniversalClient
	// real is true for a real Redis server.
	real bool
	// mini is the embedded server, nil for real ones.
	mini *miniredis.Miniredis
}

var (
	realOnce sync.Once
	realOpts *redis.Options
	realErr  error
)

func realRedisOptions() (*redis.Options, error) {
	realOnce.Do(func() {
		url := os.Getenv("TASKFLOW_TEST_REDIS_URL")
		if url == "" {
			url = "redis://127.0.0.1:6379/0"
		}
		opts, err := redis.ParseURL(url)
		if err != nil {
			realErr = err
			return
		}
		c := redis.NewClient(opts)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := c.Ping(ctx).Err(); err != nil {
			realErr = err
			return
		}
		realOpts = opts
	})
	return realOpts, realErr
}

// backends returns the backends to run on.
func backends(t testing.TB) []backend {
	t.Helper()
	mr := miniredis.RunT(t)
	out := []backend{{
		name: "miniredis",
		mini: mr,
		client: func(t testing.TB) redis.UniversalClient {
			c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
			t.Cleanup(func() { _ = c.Close() })
			return c
		},
	}}
	opts, err := realRedisOptions()
	switch {
	case err == nil:
		out = append(out, backend{
			name: "redis",
			real: true,
			client: func(t testing.TB) redis.UniversalClient {
				o := *opts
				c := redis.NewClient(&o)
				t.Cleanup(func() { _ = c.Close() })
				return c
			},
		})
	case os.Getenv("TASKFLOW_TEST_REQUIRE_REDIS") == "1":
		t.Fatalf("real Redis required (TASKFLOW_TEST_REQUIRE_REDIS=1) but unreachable: %v", err)
	default:
		t.Logf("real Redis not reachable, running on miniredis only: %v", err)
	}
	if addrs := clusterAddrs(); len(addrs) > 0 {
		out = append(out, backend{
			name: "cluster",
			real: true,
			client: func(t testing.TB) redis.UniversalClient {
				c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
				t.Cleanup(func() { _ = c.Close() })
				return c
			},
		})
	}
	return out
}

func clusterAddrs() []string {
	v := strings.TrimSpace(os.Getenv("TASKFLOW_TEST_CLUSTER_ADDRS"))
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// scanAll calls fn with every key matching pattern, on every master of a
// cluster (concurrently: fn must be safe for that).
func scanAll(ctx context.Context, c redis.UniversalClient, pattern string, fn func(node redis.Cmdable, keys []string)) error {
	scan := func(ctx context.Context, node redis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := node.Scan(ctx, cursor, pattern, 1000).Result()
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				fn(node, keys)
			}
			if next == 0 {
				return nil
			}
			cursor = next
		}
	}
	if cc, ok := c.(*redis.ClusterClient); ok {
		// fn runs on the masters' goroutines at once.
		return cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			return scan(ctx, node)
		})
	}
	return scan(ctx, c)
}

func TestMain(m *testing.M) {
	// The fault tests stop servers on purpose; go-redis would log every
	// failed dial.
	redis.SetLogger(silentLogger{})
	os.Exit(m.Run())
}

type silentLogger struct{}

func (silentLogger) Printf(context.Context, string, ...any) {}

// fakeClock is a settable clock for the store and engine.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Now().UTC().Truncate(time.Millisecond)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

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

func randomPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "tftest-" + hex.EncodeToString(b[:])
}

// newEnv opens a store with a fresh prefix on b and deletes the prefix's
// keys when the test ends.
func newEnv(t testing.TB, b backend, opts ...StoreOption) *env {
	t.Helper()
	e := &env{t: t, b: b, client: b.client(t), prefix: randomPrefix(), clock: newFakeClock(), ctx: context.Background()}
	e.options = append([]StoreOption{WithPrefix(e.prefix), WithClock(e.clock.Now)}, opts...)
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
	c := b.client(t)
	ctx := context.Background()
	_ = scanAll(ctx, c, prefix+":*", func(node redis.Cmdable, keys []string) {
		for _, k := range keys {
			node.Del(ctx, k) // one by one: keys of a batch may be in different slots
		}
	})
}

// dump returns every key of the prefix with a rendering of its value, to
// prove that a refused call changed nothing.
func (e *env) dump() map[string]string {
	e.t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	var all []string
	var mu sync.Mutex
	if err := scanAll(ctx, e.client, e.prefix+":*", func(_ redis.Cmdable, keys []string) {
		mu.Lock()
		all = append(all, keys...)
		mu.Unlock()
	}); err != nil {
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

func formatScore(f float64) string { return time.UnixMilli(int64(f)).UTC().Format(time.RFC3339Nano) }

// forEachBackend runs fn as a subtest on every backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, e *env), opts ...StoreOption) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			fn(t, newEnv(t, b, opts...))
		})
	}
}
