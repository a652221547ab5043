package taskflow_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
)

// Find lists the flows of one customer and controller, newest first,
// page by page; SetAttributes relabels a flow. (miniredis stands in for
// Redis here.)
func ExampleManager_Find() {
	mr, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer mr.Close()
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	store, err := taskflow.NewRedisStore(client, taskflow.WithClock(func() time.Time { return now }))
	if err != nil {
		log.Fatal(err)
	}
	m := taskflow.NewManager(store)
	for i, customer := range []string{"acme", "globex", "acme", "acme"} {
		now = now.Add(time.Second)
		_, err := m.CreateManaged(ctx, taskflow.CreateManagedInput{
			ControllerID: "kate/upload", Goal: fmt.Sprintf("upload chapter %d", i+1),
			OwnerSessionKey: "agent:kate:session:1",
			Attributes:      map[string]string{"customer": customer, "chapter": fmt.Sprint(i + 1)},
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	filter := taskflow.Filter{Controller: "kate/upload", Attribute: "customer=acme"}
	cursor := ""
	for {
		page, err := m.Find(ctx, filter, taskflow.WithLimit(2), taskflow.WithCursor(cursor))
		if err != nil {
			log.Fatal(err)
		}
		for _, f := range page.Flows {
			fmt.Println(f.Goal, f.Attributes["customer"])
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}

	// Chapter 2 moves to acme: it joins the listing, at its creation time.
	page, _ := m.Find(ctx, taskflow.Filter{Attribute: "chapter=2"})
	f, err := m.SetAttributes(ctx, page.Flows[0].ID, map[string]string{"customer": "acme"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("revision", f.Revision)
	page, _ = m.Find(ctx, filter)
	fmt.Println("acme now has", len(page.Flows))
	// Output:
	// upload chapter 4 acme
	// upload chapter 3 acme
	// upload chapter 1 acme
	// revision 1
	// acme now has 4
}
