package taskflow_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
)

var errRateLimited = errors.New("429 rate limited")

// A worker loop with retries: claim a flow, try its step, and on a
// transient failure record the attempt with RetryLater, which puts the
// flow to wait on a backoff timer (any engine resumes it, any worker
// claims it again) or, after the last attempt, fails it. (miniredis
// stands in for Redis, and the engine ticks by hand at chosen times.)
func ExampleManager_RetryLater() {
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
	engine := taskflow.NewWaitEngine(m)

	// Jitter 0.5 makes the backoff exact for the example: 3/4 of
	// Base·2^(n-1), capped. Leave Rand nil in production.
	policy := taskflow.RetryPolicy{MaxAttempts: 3, Base: time.Second, Cap: time.Minute,
		Rand: func() float64 { return 0.5 }}
	callModel := func(*taskflow.Flow) error { return errRateLimited } // always fails here

	if _, err := m.CreateMirrored(ctx, taskflow.CreateManagedInput{
		ControllerID: "kate/summarize", Goal: "summarize the thread", OwnerSessionKey: "agent:kate:session:1",
	}); err != nil {
		log.Fatal(err)
	}
	now := time.Now()
	for {
		f, lease, err := m.Claim(ctx, "kate/summarize", "worker-1", time.Minute, taskflow.WithClaimWait(0))
		if err != nil {
			log.Fatal(err)
		}
		if f == nil { // nothing ready: let the engine resume due timers
			now = now.Add(time.Minute)
			if rep := engine.TickAt(ctx, now); rep.Resumed == 0 {
				break
			}
			continue
		}
		if err := callModel(f); err != nil {
			f, err = m.RetryLater(ctx, f.ID, policy, err.Error(), taskflow.WithLease(lease))
			if err != nil {
				log.Fatal(err)
			}
			if f.Status == taskflow.StatusFailed {
				fmt.Println("attempt", f.Attempts, "failed the flow")
				continue
			}
			var wait struct{ At time.Time }
			_ = json.Unmarshal(f.Wait, &wait)
			fmt.Println("attempt", f.Attempts, "failed; retry in", wait.At.Sub(f.UpdatedAt))
			continue
		}
		// On success: _, _ = m.ResetAttempts(ctx, f.ID, taskflow.WithLease(lease)), then Finish.
	}
	failed, _ := m.ListByStatus(ctx, taskflow.StatusFailed)
	var state struct{ Failure struct{ Reason string } }
	_ = json.Unmarshal(failed[0].State, &state)
	fmt.Println(state.Failure.Reason)
	// Output:
	// attempt 1 failed; retry in 750ms
	// attempt 2 failed; retry in 1.5s
	// attempt 3 failed the flow
	// gave up after 3 attempts: 429 rate limited
}
