package mcpserver

import (
	"testing"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/internal/testbackend"
)

// The tests run on the backends of internal/testbackend: miniredis, a
// real Redis (127.0.0.1:6379, or TASKFLOW_TEST_REDIS_URL; required when
// TASKFLOW_TEST_REQUIRE_REDIS=1) and a Redis Cluster when
// TASKFLOW_TEST_CLUSTER_ADDRS lists its nodes. Each test uses its own key
// prefix and deletes its keys.

// eachBackend runs f with a manager on a fresh flow space of every
// backend.
func eachBackend(t *testing.T, f func(t *testing.T, m *taskflow.Manager)) {
	testbackend.Each(t, func(t *testing.T, b testbackend.Backend) {
		client := b.Client(t)
		prefix := testbackend.Prefix("tfmcp-test")
		testbackend.CleanupKeys(t, client, prefix)
		store, err := taskflow.NewRedisStore(client, taskflow.WithPrefix(prefix))
		if err != nil {
			t.Fatal(err)
		}
		m := taskflow.NewManager(store)
		t.Cleanup(func() { _ = m.Close() })
		f(t, m)
	})
}
