package mcpserver

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
)

// The tests run on miniredis, on a real Redis (127.0.0.1:6379, or
// TASKFLOW_TEST_REDIS_URL; required when TASKFLOW_TEST_REQUIRE_REDIS=1)
// and on a Redis Cluster when TASKFLOW_TEST_CLUSTER_ADDRS lists its
// nodes. Each test uses its own key prefix and deletes its keys.

type backend struct {
	name   string
	client func(t *testing.T) redis.UniversalClient
}

func backends(t *testing.T) []backend {
	t.Helper()
	out := []backend{{name: "miniredis", client: func(t *testing.T) redis.UniversalClient {
		mr := miniredis.RunT(t)
		return redis.NewClient(&redis.Options{Addr: mr.Addr()})
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
		out = append(out, backend{name: "redis", client: func(*testing.T) redis.UniversalClient { return redis.NewClient(opts) }})
	case os.Getenv("TASKFLOW_TEST_REQUIRE_REDIS") == "1":
		t.Fatalf("real Redis required but unreachable: %v", err)
	default:
		t.Logf("real Redis unreachable, testing on miniredis only: %v", err)
	}
	var addrs []string
	for _, a := range strings.Split(os.Getenv("TASKFLOW_TEST_CLUSTER_ADDRS"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) > 0 {
		out = append(out, backend{name: "cluster", client: func(*testing.T) redis.UniversalClient {
			return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
		}})
	}
	return out
}

// eachBackend runs f with a manager on a fresh flow space of every
// backend.
func eachBackend(t *testing.T, f func(t *testing.T, m *taskflow.Manager)) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			client := b.client(t)
			prefix := "tfmcp-test-" + uuid.NewString()[:8]
			t.Cleanup(func() {
				deleteKeys(t, client, prefix)
				_ = client.Close()
			})
			store, err := taskflow.NewRedisStore(client, taskflow.WithPrefix(prefix))
			if err != nil {
				t.Fatal(err)
			}
			m := taskflow.NewManager(store)
			t.Cleanup(func() { _ = m.Close() })
			f(t, m)
		})
	}
}

// deleteKeys removes the test's keys (never a flush: the servers are
// shared), on a cluster from every master.
func deleteKeys(t *testing.T, client redis.UniversalClient, prefix string) {
	ctx := context.Background()
	var mu sync.Mutex
	scan := func(ctx context.Context, node redis.Cmdable) error {
		iter := node.Scan(ctx, 0, prefix+":*", 500).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			err := client.Del(ctx, iter.Val()).Err()
			mu.Unlock()
			if err != nil {
				return err
			}
		}
		return iter.Err()
	}
	var err error
	if cc, ok := client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return scan(ctx, node) })
	} else {
		err = scan(ctx, client)
	}
	if err != nil {
		t.Errorf("deleting the test's keys: %v", err)
	}
}
