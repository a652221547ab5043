package taskflow_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
)

// The connection alone, as the README shows it: a failover client and a
// store whose writes wait for one replica. (Compiled, not run.)
func ExampleNewRedisStore_failoverClient() {
	client := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    "mymaster",
		SentinelAddrs: []string{"10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"},
		// A call honours its context deadline; keep WAIT's timeout
		// (below) under ReadTimeout.
		ContextTimeoutEnabled: true,
		ReadTimeout:           3 * time.Second,
	})
	store, err := taskflow.NewRedisStore(client, taskflow.WithPrefix("myapp"),
		taskflow.WithReplicaAcks(1, time.Second))
	if err != nil {
		log.Fatal(err)
	}
	m := taskflow.NewManager(store)
	defer m.Close()
}

// Connecting through Sentinel: go-redis's failover client asks the
// Sentinels for the master and follows a failover; WithReplicaAcks makes
// an acknowledged write one a replica holds, so a crash that promotes a
// replica keeps it. (Compiled, not run: it needs a Sentinel setup; the
// README's Reliability section and TestSentinelFailover run one.)
func ExampleNewRedisStore_sentinel() {
	client := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    "mymaster",
		SentinelAddrs: []string{"10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"},
		// A call honours its context deadline; keep WAIT's timeout
		// (below) under ReadTimeout.
		ContextTimeoutEnabled: true,
		ReadTimeout:           3 * time.Second,
	})
	defer client.Close()
	store, err := taskflow.NewRedisStore(client, taskflow.WithPrefix("myapp"),
		taskflow.WithReplicaAcks(1, time.Second))
	if err != nil {
		log.Fatal(err)
	}
	m := taskflow.NewManager(store)
	defer m.Close()
	ctx := context.Background()

	f, lease, err := m.Claim(ctx, "kate/inbox-triage", "worker-1", time.Minute)
	switch {
	case errors.Is(err, taskflow.ErrNotReplicated):
		// Applied on the master, not yet on a replica: the flow is
		// leased to this worker all the same. Carry on with it.
		log.Printf("claim not confirmed replicated: %v", err)
	case err != nil:
		log.Printf("claim: %v", err)
		return
	}
	if f == nil {
		return // nothing ready within the claim wait
	}
	// ... do the step ...
	_, err = m.Finish(ctx, f.ID, map[string]any{"done": true}, taskflow.WithLease(lease))
	var unknown *taskflow.OutcomeUnknownError
	if errors.As(err, &unknown) {
		// The master died under the call: it may have applied. The flow
		// remembers its recent calls, so the same call again applies
		// once.
		_, err = m.Finish(ctx, f.ID, map[string]any{"done": true}, taskflow.WithLease(lease),
			taskflow.WithCallID(unknown.CallID))
	}
	if err != nil && !errors.Is(err, taskflow.ErrNotReplicated) {
		log.Printf("finish: %v", err)
	}
}
