package taskflow_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
)

// Fan-out and fan-in: a planner starts one researcher per topic, waits
// until two of the three have finished, and resumes with their results
// in its state under "children"; its end cancels the one still running.
func ExampleManager_StartChildren() {
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
	plan, err := m.CreateMirrored(ctx, taskflow.CreateManagedInput{
		ControllerID: "planner", Goal: "write up three topics", OwnerSessionKey: "agent:1",
	})
	if err != nil {
		log.Fatal(err)
	}

	// Fan out: one child per topic, keyed so a retried call starts none twice.
	var children []taskflow.ChildInput
	for _, topic := range []string{"tides", "moons", "comets"} {
		children = append(children, taskflow.ChildInput{Key: topic, Flow: taskflow.CreateManagedInput{
			ControllerID: "researcher", Goal: "research " + topic, OwnerSessionKey: "agent:1",
		}})
	}
	if _, err := m.StartChildren(ctx, plan.ID, children); err != nil {
		log.Fatal(err)
	}
	if _, err := m.SetWaiting(ctx, plan.ID, taskflow.WaitChildren(taskflow.Join{Need: 2})); err != nil {
		log.Fatal(err)
	}

	// Researchers, anywhere in the fleet, claim and finish children.
	for i := 0; i < 2; i++ {
		f, lease, err := m.Claim(ctx, "researcher", "worker-1", time.Minute)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := m.Finish(ctx, f.ID, map[string]string{"notes": f.Goal + ": done"}, taskflow.WithLease(lease)); err != nil {
			log.Fatal(err)
		}
	}

	// Fan in: the planner runs again, with what two researchers found.
	plan, err = m.Get(ctx, plan.ID)
	if err != nil {
		log.Fatal(err)
	}
	var st struct {
		Children struct {
			Finished, Pending int
			Why               string
			Results           []struct{ Key, Status string }
		}
	}
	if err := json.Unmarshal(plan.State, &st); err != nil {
		log.Fatal(err)
	}
	fmt.Println(plan.Status, st.Children.Why, st.Children.Finished, "finished,", st.Children.Pending, "pending")
	fmt.Println(len(st.Children.Results), "results")

	// The planner finishes; the researcher still running is cancelled.
	if _, err := m.Finish(ctx, plan.ID, nil); err != nil {
		log.Fatal(err)
	}
	kids, _, err := m.ListChildren(ctx, plan.ID)
	if err != nil {
		log.Fatal(err)
	}
	ended := map[taskflow.FlowStatus]int{}
	for _, k := range kids {
		ended[k.Status]++
	}
	fmt.Println(ended[taskflow.StatusFinished], "finished,", ended[taskflow.StatusCancelled], "cancelled")
	// Output:
	// running met 2 finished, 1 pending
	// 2 results
	// 2 finished, 1 cancelled
}
