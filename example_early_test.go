package taskflow_test

import (
	"context"
	"fmt"
	"log"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
)

// A reply that arrives before the flow waits for it is kept, and the
// wait takes it: SetWaiting returns the flow running, with the reply.
func ExampleManager_SetWaiting_earlyEvent() {
	mr, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer mr.Close()
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	store, err := taskflow.NewRedisStore(client) // keeps early events 24 h
	if err != nil {
		log.Fatal(err)
	}
	m := taskflow.NewManager(store)
	f, err := m.CreateMirrored(ctx, taskflow.CreateManagedInput{
		ControllerID: "mailer", Goal: "ask for approval", OwnerSessionKey: "agent:1",
	})
	if err != nil {
		log.Fatal(err)
	}

	// The worker sent an email; the reply comes back before it waits.
	resumed, err := m.ResumeByCorrelation(ctx, "email.reply", "msg-42", map[string]string{"answer": "yes"})
	if err != nil {
		log.Fatal(err)
	}
	st, err := m.Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("resumed now:", len(resumed), "kept:", st.EarlyEvents)

	f, err = m.SetWaiting(ctx, f.ID, taskflow.WaitExternalEvent("email.reply", "msg-42"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(f.Status, string(f.State))
	events, err := m.ListEvents(ctx, f.ID, 2)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(events[1].Kind, "then", events[0].Kind)
	// Output:
	// resumed now: 0 kept: 1
	// running {"resume_event":{"answer":"yes"}}
	// waiting then resumed
}
