package taskflow_test

import (
	"context"
	"fmt"
	"log"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/fsck"
)

// Verify checks the flow space's invariants; with fsck.WithRepair it
// rebuilds what a flow's record implies. Here a flow's entry in its
// owner's index is lost. (miniredis stands in for Redis here.)
func ExampleManager_Verify() {
	mr, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer mr.Close()
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	store, err := taskflow.NewRedisStore(client)
	if err != nil {
		log.Fatal(err)
	}
	m := taskflow.NewManager(store)
	defer m.Close()
	f, err := m.CreateMirrored(ctx, taskflow.CreateManagedInput{ControllerID: "kate/inbox", Goal: "triage", OwnerSessionKey: "agent:kate:session:1"})
	if err != nil {
		log.Fatal(err)
	}
	owners, _ := client.Keys(ctx, "*:owner:agent:kate:session:1").Result()
	client.ZRem(ctx, owners[0], f.ID.String()) // the damage

	rep, err := m.Verify(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("flows", rep.Flows, "ok", rep.OK())
	for _, p := range rep.Problems {
		fmt.Println(p.Kind, p.FlowID == f.ID.String(), p.Repaired)
	}
	rep, _ = m.Verify(ctx, fsck.WithRepair())
	fmt.Println("repaired", len(rep.Problems)-rep.Unrepaired(), "of", len(rep.Problems))
	rep, _ = m.Verify(ctx)
	fmt.Println("ok", rep.OK())
	// Output:
	// flows 1 ok false
	// owner_index_missing true false
	// repaired 1 of 1
	// ok true
}
