package agenttool_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/agenttool"
)

func ExampleTool_Call() {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()

	store, err := taskflow.NewRedisStore(client)
	if err != nil {
		panic(err)
	}
	tool := agenttool.New(taskflow.NewManager(store))

	// The model's call, routed with the caller's session.
	session := agenttool.Session{AgentID: "kate", SessionID: "chat-42"}
	out, err := tool.Call(context.Background(), session, json.RawMessage(`{
		"action": "start",
		"controller_id": "kate/inbox-triage",
		"goal": "triage today's inbox",
		"state": {"processed": 0}
	}`))
	if err != nil {
		panic(err)
	}

	var res struct {
		OK   bool `json:"ok"`
		Flow struct {
			Status      string          `json:"status"`
			CurrentStep string          `json:"current_step"`
			Revision    int64           `json:"revision"`
			State       json.RawMessage `json:"state"`
		} `json:"flow"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		panic(err)
	}
	fmt.Println("ok:", res.OK)
	fmt.Println("status:", res.Flow.Status)
	fmt.Println("step:", res.Flow.CurrentStep)
	fmt.Println("revision:", res.Flow.Revision)
	fmt.Println("state:", string(res.Flow.State))
	// Output:
	// ok: true
	// status: running
	// step: init
	// revision: 1
	// state: {"processed":0}
}
