package taskflow_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
)

// A webhook delivered twice makes one flow: the create carries the
// delivery's id as its idempotency key. (miniredis stands in for Redis.)
func ExampleCreateManagedInput_idempotencyKey() {
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

	in := taskflow.CreateManagedInput{
		ControllerID: "shop/fulfil", Goal: "ship order 12345",
		OwnerSessionKey: "agent:shop:session:webhooks", IdempotencyKey: "delivery-7f3a",
	}
	first, _ := m.CreateMirrored(ctx, in)
	second, _ := m.CreateMirrored(ctx, in) // the retried delivery
	fmt.Println("same flow:", first.ID == second.ID, "revision", second.Revision)
	fmt.Println("id from the key:", first.ID == store.IdempotentFlowID("delivery-7f3a"))

	in.Goal = "ship order 99999" // the same key for another job is refused
	_, err = m.CreateMirrored(ctx, in)
	fmt.Println(errors.Is(err, taskflow.ErrIdempotencyConflict))
	// Output:
	// same flow: true revision 1
	// id from the key: true
	// true
}
