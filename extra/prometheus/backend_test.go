package tfprom

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/internal/testbackend"
)

// The tests run on the backends of internal/testbackend: miniredis
// always, the real Redis at TASKFLOW_TEST_REDIS_URL (default
// redis://127.0.0.1:6379/0) when it answers or when
// TASKFLOW_TEST_REQUIRE_REDIS=1, and the cluster in
// TASKFLOW_TEST_CLUSTER_ADDRS. Each run gets its own key prefix, deleted
// at the end.

func backends(t *testing.T) []testbackend.Backend { return testbackend.List(t) }

func randomPrefix() string { return testbackend.Prefix("tfprom") }

// cleanup deletes every key of prefix when the test ends.
func cleanup(t *testing.T, c redis.UniversalClient, prefix string) {
	t.Cleanup(func() { _ = testbackend.DeleteKeys(context.Background(), c, prefix) })
}
