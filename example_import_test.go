package taskflow_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
)

// Carrying a flow over from another store: InsertFlow writes it as it
// was, with its steps and audit log, and the engine takes it from there.
func ExampleRedisStore_InsertFlow() {
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

	created := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	f := &taskflow.Flow{
		ID:              uuid.MustParse("6f1c2e1a-0b7e-4c53-9a55-0d2b8e7c4a10"),
		ControllerID:    "kate/inbox-triage",
		Goal:            "answer the landlord",
		OwnerSessionKey: "agent:kate:session:abc",
		CurrentStep:     "await-reply",
		State:           json.RawMessage(`{"drafts":2}`),
		Wait:            json.RawMessage(`{"kind":"external_event","topic":"email.reply","correlation_id":"msg-8812"}`),
		Status:          taskflow.StatusWaiting,
		Revision:        4,
		CreatedAt:       created,
		UpdatedAt:       created.Add(time.Hour),
	}
	_, err = store.InsertFlow(ctx, taskflow.Import{
		Flow:  f,
		Steps: []*taskflow.FlowStep{{RunID: "draft-1", Runtime: taskflow.RuntimeManaged, Task: "draft", Status: taskflow.StepSucceeded}},
		Events: []*taskflow.FlowEvent{
			{Kind: taskflow.EventCreated, At: created},
			{Kind: taskflow.EventWaiting, At: created.Add(time.Hour)},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	_, err = store.InsertFlow(ctx, taskflow.Import{Flow: f})
	fmt.Println("again:", errors.Is(err, taskflow.ErrAlreadyExists))

	m := taskflow.NewManager(store)
	events, _ := m.ListEvents(ctx, f.ID, 10)
	for _, ev := range events {
		fmt.Println(ev.ID, ev.Kind, ev.At.Format(time.RFC3339), "revision", ev.Revision)
	}
	step, _ := store.FindStepByRunID(ctx, f.ID, "draft-1")
	fmt.Println("step:", step.Task, step.Status)

	resumed, _ := m.TryResumeExternal(ctx, f.ID, "email.reply", "msg-8812", nil)
	fmt.Println("resumed:", resumed.Status, "revision", resumed.Revision)
	// Output:
	// again: true
	// 2 waiting 2026-05-01T11:00:00Z revision 4
	// 1 created 2026-05-01T10:00:00Z revision 4
	// step: draft succeeded
	// resumed: running revision 5
}
