// Package testbackend is the test harness shared by the modules of this
// repository: the Redis backends every test runs on, a key prefix per
// test and its deletion, and private redis-server processes for the tests
// that kill, restart or reconfigure a server.
//
// The backends are an embedded miniredis always, the real Redis at
// TASKFLOW_TEST_REDIS_URL (default redis://127.0.0.1:6379/0) when it
// answers, and a Redis Cluster when TASKFLOW_TEST_CLUSTER_ADDRS lists its
// nodes (comma-separated host:port; .ci/run starts one with
// .ci/cluster.sh). With TASKFLOW_TEST_REQUIRE_REDIS=1 (CI sets it) an
// unreachable real Redis, or a missing redis-server binary, fails the test
// instead of skipping it. The real servers are shared: each test works
// under its own key prefix and deletes its keys; nothing here flushes a
// database.
package testbackend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// DefaultRedisURL is the real Redis used when TASKFLOW_TEST_REDIS_URL is
// unset.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

// Backend is one Redis the tests run on.
type Backend struct {
	// Name is "miniredis", "redis" or "cluster"; Each names its subtests
	// after it.
	Name string
	// Real is true for a real Redis server (single or cluster).
	Real bool
	// Mini is the embedded server, nil for real ones.
	Mini *miniredis.Miniredis
	// URL reaches the backend in the form the taskflow CLI takes: a
	// redis:// URL, or for the cluster the first node with the others as
	// addr= parameters (see ClusterURL).
	URL string
	// Client returns a new client on the backend (a new "process"),
	// closed when t ends.
	Client func(t testing.TB) redis.UniversalClient
}

// RedisURL returns the real Redis's URL: TASKFLOW_TEST_REDIS_URL, or
// DefaultRedisURL.
func RedisURL() string {
	if u := os.Getenv("TASKFLOW_TEST_REDIS_URL"); u != "" {
		return u
	}
	return DefaultRedisURL
}

// RequireRedis reports whether TASKFLOW_TEST_REQUIRE_REDIS=1: a real
// Redis, or a redis-server binary, that is missing fails the test.
func RequireRedis() bool { return os.Getenv("TASKFLOW_TEST_REQUIRE_REDIS") == "1" }

var (
	realOnce sync.Once
	realOpts *redis.Options
	realErr  error
)

// RealOptions returns the options of the real Redis at RedisURL, or the
// error that kept it from answering a PING within 2 s. It asks once per
// test binary; callers copy the options before changing them.
func RealOptions() (*redis.Options, error) {
	realOnce.Do(func() {
		opts, err := redis.ParseURL(RedisURL())
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

// ClusterAddrs returns the nodes listed in TASKFLOW_TEST_CLUSTER_ADDRS,
// nil when it is unset.
func ClusterAddrs() []string {
	var addrs []string
	for _, a := range strings.Split(os.Getenv("TASKFLOW_TEST_CLUSTER_ADDRS"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// ClusterURL returns the cluster of ClusterAddrs as one URL, the form
// redis.ParseClusterURL and the taskflow CLI take: the first node in the
// host part, the others as addr= parameters. It returns "" when no
// cluster is listed.
func ClusterURL() string {
	addrs := ClusterAddrs()
	if len(addrs) == 0 {
		return ""
	}
	q := url.Values{"addr": addrs[1:]}
	if len(addrs) == 1 {
		// One node still needs an addr= to be a cluster URL.
		q["addr"] = addrs
	}
	return "redis://" + addrs[0] + "?" + q.Encode()
}

// List returns the backends to run on: a miniredis started for t, the
// real Redis when it answers (t fails when it does not and RequireRedis),
// and the cluster when ClusterAddrs lists one.
func List(t testing.TB) []Backend {
	t.Helper()
	mr := miniredis.RunT(t)
	out := []Backend{{
		Name: "miniredis",
		Mini: mr,
		URL:  "redis://" + mr.Addr() + "/0",
		Client: func(t testing.TB) redis.UniversalClient {
			return closeAtCleanup(t, redis.NewClient(&redis.Options{Addr: mr.Addr()}))
		},
	}}
	opts, err := RealOptions()
	switch {
	case err == nil:
		out = append(out, Backend{
			Name: "redis",
			Real: true,
			URL:  RedisURL(),
			Client: func(t testing.TB) redis.UniversalClient {
				o := *opts
				return closeAtCleanup(t, redis.NewClient(&o))
			},
		})
	case RequireRedis():
		t.Fatalf("real Redis required (TASKFLOW_TEST_REQUIRE_REDIS=1) but unreachable: %v", err)
	default:
		t.Logf("real Redis not reachable, running on miniredis only: %v", err)
	}
	if addrs := ClusterAddrs(); len(addrs) > 0 {
		out = append(out, Backend{
			Name: "cluster",
			Real: true,
			URL:  ClusterURL(),
			Client: func(t testing.TB) redis.UniversalClient {
				return closeAtCleanup(t, redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs}))
			},
		})
	}
	return out
}

func closeAtCleanup(t testing.TB, c redis.UniversalClient) redis.UniversalClient {
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Each runs fn as a subtest, named after the backend, on every backend of
// List.
func Each(t *testing.T, fn func(t *testing.T, b Backend)) {
	t.Helper()
	for _, b := range List(t) {
		t.Run(b.Name, func(t *testing.T) { fn(t, b) })
	}
}

// Prefix returns a fresh key prefix: kind, a dash and 12 random hex
// digits ("tftest-3f9a0c1b2d4e").
func Prefix(kind string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return kind + "-" + hex.EncodeToString(b[:])
}

// ScanAll calls fn with every batch of keys matching pattern; on a
// cluster it scans every master, concurrently, so fn must be safe for
// that. node is the server the keys were found on.
func ScanAll(ctx context.Context, c redis.UniversalClient, pattern string, fn func(node redis.Cmdable, keys []string)) error {
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
		return cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			return scan(ctx, node)
		})
	}
	return scan(ctx, c)
}

// Keys returns every key matching pattern, on every master, sorted.
func Keys(ctx context.Context, c redis.UniversalClient, pattern string) ([]string, error) {
	var mu sync.Mutex
	var out []string
	err := ScanAll(ctx, c, pattern, func(_ redis.Cmdable, keys []string) {
		mu.Lock()
		out = append(out, keys...)
		mu.Unlock()
	})
	sort.Strings(out)
	return out, err
}

// CleanupKeys deletes the keys of prefix (see DeleteKeys) when t ends,
// and reports a failure to delete them as an error of t.
func CleanupKeys(t testing.TB, c redis.UniversalClient, prefix string) {
	t.Cleanup(func() {
		if err := DeleteKeys(context.Background(), c, prefix); err != nil {
			t.Errorf("deleting the keys of %s: %v", prefix, err)
		}
	})
}

// DeleteKeys deletes every key of prefix (prefix+":*") on every master,
// one DEL per key so that keys of different slots never share a command.
// It never flushes: the servers are shared.
func DeleteKeys(ctx context.Context, c redis.UniversalClient, prefix string) error {
	var mu sync.Mutex
	var firstErr error
	err := ScanAll(ctx, c, prefix+":*", func(node redis.Cmdable, keys []string) {
		for _, k := range keys {
			if err := node.Del(ctx, k).Err(); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}
	})
	if err != nil {
		return err
	}
	return firstErr
}
