package taskflow_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
)

// The README's quickstart: open a store, drive a flow, wait on a timer
// that an engine resumes. (miniredis stands in for Redis here.)
func Example() {
	mr, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer mr.Close()
	ctx := context.Background()

	client := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	defer client.Close()
	store, err := taskflow.NewRedisStore(client, taskflow.WithPrefix("myapp"))
	if err != nil {
		log.Fatal(err)
	}
	m := taskflow.NewManager(store)

	f, err := m.CreateManaged(ctx, taskflow.CreateManagedInput{
		ControllerID:    "kate/bible-upload",
		Goal:            "upload chapter 1",
		OwnerSessionKey: "agent:kate:session:abc",
		RequesterOrigin: "user-1",
		CurrentStep:     "verse-0",
		State:           map[string]any{"verses_done": 0, "total": 31},
	})
	if err != nil {
		log.Fatal(err)
	}
	f, _ = m.StartRunning(ctx, f.ID)
	f, _ = m.UpdateState(ctx, f.ID, map[string]any{"verses_done": 10}, "verse-10")
	fmt.Println(f.Status, f.CurrentStep, string(f.State), "revision", f.Revision)

	// Wait an hour; any engine in the fleet resumes the flow when due.
	f, _ = m.SetWaiting(ctx, f.ID, taskflow.WaitTimer(time.Now().Add(time.Hour)))
	fmt.Println(f.Status, string(f.Wait[:16]))

	engine := taskflow.NewWaitEngine(m)
	report := engine.TickAt(ctx, time.Now().Add(2*time.Hour))
	fmt.Printf("scanned %d, resumed %d\n", report.Scanned, report.Resumed)

	f, _ = m.Finish(ctx, f.ID, map[string]any{"verses_done": 31})
	fmt.Println(f.Status, string(f.State), "revision", f.Revision)
	// Output:
	// running verse-10 {"total":31,"verses_done":10} revision 2
	// waiting {"kind":"timer",
	// scanned 1, resumed 1
	// finished {"total":31,"verses_done":31} revision 5
}

// A compare-and-set: the update applies only if nobody wrote since.
func ExampleIfRevision() {
	mr, _ := miniredis.Run()
	defer mr.Close()
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	store, _ := taskflow.NewRedisStore(client)
	m := taskflow.NewManager(store)

	f, _ := m.CreateMirrored(ctx, taskflow.CreateManagedInput{
		ControllerID: "c", Goal: "g", OwnerSessionKey: "agent:a:session:s",
	})
	_, err := m.UpdateState(ctx, f.ID, map[string]int{"x": 1}, "", taskflow.IfRevision(f.Revision))
	fmt.Println("first:", err)
	_, err = m.UpdateState(ctx, f.ID, map[string]int{"x": 2}, "", taskflow.IfRevision(f.Revision))
	var rm *taskflow.RevisionMismatchError
	if errors.As(err, &rm) {
		fmt.Println("second: stale, expected", rm.Expected, "actual", rm.Actual)
	}
	// Output:
	// first: <nil>
	// second: stale, expected 1 actual 2
}

// A worker that keeps busy: each Finish hands it the next ready flow of
// its controller in the same script (one shard here, so every flow is
// in reach).
func ExampleWithNext() {
	mr, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer mr.Close()
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	store, err := taskflow.NewRedisStore(client, taskflow.WithShards(1))
	if err != nil {
		log.Fatal(err)
	}
	m := taskflow.NewManager(store)
	defer m.Close()
	for i := range 3 {
		_, err := m.CreateMirrored(ctx, taskflow.CreateManagedInput{
			ControllerID: "shop/fulfil", Goal: fmt.Sprintf("ship order %d", i), OwnerSessionKey: "agent:shop:session:1",
		})
		if err != nil {
			log.Fatal(err)
		}
	}

	f, lease, err := m.Claim(ctx, "shop/fulfil", "worker-1", time.Minute, taskflow.WithClaimWait(0))
	finished := 0
	for f != nil && err == nil {
		_, err = m.Finish(ctx, f.ID, map[string]any{"shipped": true}, taskflow.WithLease(lease),
			taskflow.WithNext(&f, &lease, time.Minute))
		finished++
	}
	fmt.Println("finished", finished, "flows after one claim; error:", err)
	// Output:
	// finished 3 flows after one claim; error: <nil>
}
