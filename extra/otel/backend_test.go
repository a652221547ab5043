package tfotel

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// The backends of the library's tests (see the root backend_test.go):
// miniredis always, the real Redis at TASKFLOW_TEST_REDIS_URL (default
// redis://127.0.0.1:6379/0) when it answers or when
// TASKFLOW_TEST_REQUIRE_REDIS=1, and the cluster in
// TASKFLOW_TEST_CLUSTER_ADDRS. Each run gets its own key prefix, deleted
// at the end.
type backend struct {
	name   string
	client func(t testing.TB) redis.UniversalClient
}

func backends(t *testing.T) []backend {
	mr := miniredis.RunT(t)
	out := []backend{{"miniredis", func(t testing.TB) redis.UniversalClient {
		c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}}}
	url := os.Getenv("TASKFLOW_TEST_REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opts, err := redis.ParseURL(url)
	if err == nil {
		c := redis.NewClient(opts)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = c.Ping(ctx).Err()
		cancel()
		_ = c.Close()
	}
	switch {
	case err == nil:
		out = append(out, backend{"redis", func(t testing.TB) redis.UniversalClient {
			o := *opts
			c := redis.NewClient(&o)
			t.Cleanup(func() { _ = c.Close() })
			return c
		}})
	case os.Getenv("TASKFLOW_TEST_REQUIRE_REDIS") == "1":
		t.Fatalf("real Redis required but unreachable: %v", err)
	}
	if v := strings.TrimSpace(os.Getenv("TASKFLOW_TEST_CLUSTER_ADDRS")); v != "" {
		addrs := strings.Split(v, ",")
		out = append(out, backend{"cluster", func(t testing.TB) redis.UniversalClient {
			c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
			t.Cleanup(func() { _ = c.Close() })
			return c
		}})
	}
	return out
}

func randomPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "tfotel-" + hex.EncodeToString(b[:])
}

// cleanup deletes every key of prefix when the test ends.
func cleanup(t *testing.T, c redis.UniversalClient, prefix string) {
	t.Cleanup(func() {
		ctx := context.Background()
		scan := func(ctx context.Context, node redis.Cmdable) error {
			iter := node.Scan(ctx, 0, prefix+":*", 1000).Iterator()
			for iter.Next(ctx) {
				node.Del(ctx, iter.Val())
			}
			return iter.Err()
		}
		if cc, ok := c.(*redis.ClusterClient); ok {
			_ = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return scan(ctx, n) })
			return
		}
		_ = scan(ctx, c)
	})
}
