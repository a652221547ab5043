package taskflow_test

import (
	"context"
	"fmt"
	"log"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/observe"
)

// Stats says what the flow space is doing, and an Observer counts what
// this process does. (miniredis stands in for Redis here.)
func ExampleManager_Stats() {
	mr, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer mr.Close()
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()

	var refused atomic.Int64
	obs := &observe.Observer{Op: func(_ context.Context, ev observe.Op) {
		if ev.Code != "" && ev.Code != "ERROR" {
			refused.Add(1)
		}
	}}
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	store, err := taskflow.NewRedisStore(client, taskflow.WithObserver(obs), taskflow.WithClock(func() time.Time { return now }))
	if err != nil {
		log.Fatal(err)
	}
	m := taskflow.NewManager(store)
	in := taskflow.CreateManagedInput{ControllerID: "kate/inbox", Goal: "triage", OwnerSessionKey: "agent:kate:session:1"}
	for range 3 {
		if _, err := m.CreateMirrored(ctx, in); err != nil { // running, on kate/inbox's ready queue
			log.Fatal(err)
		}
	}
	w, _ := m.CreateMirrored(ctx, in)
	_, _ = m.SetWaiting(ctx, w.ID, taskflow.WaitTimer(now.Add(time.Minute)))
	_, _ = m.StartRunning(ctx, w.ID) // refused: the flow is waiting

	now = now.Add(3 * time.Minute) // no engine ticked meanwhile
	st, err := m.Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("running", st.Flows[taskflow.StatusRunning], "waiting", st.Flows[taskflow.StatusWaiting])
	fmt.Println("ready", st.Ready[0].Controller, st.Ready[0].Depth, "oldest", st.Ready[0].OldestAge, "stale", st.Ready[0].Stale)
	fmt.Println("tick lag", st.Timers.Lag)
	fmt.Println("refused", refused.Load())
	// Output:
	// running 3 waiting 1
	// ready kate/inbox 3 oldest 3m0s stale 3
	// tick lag 2m0s
	// refused 1
}
