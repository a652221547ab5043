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

// One tool per action, with the hints an MCP host acts on.
func ExampleMCPDefinitions() {
	for _, t := range agenttool.MCPDefinitions(agenttool.PerAction) {
		a := t.Annotations
		fmt.Printf("%-23s read-only=%-5v destructive=%-5v idempotent=%v\n", t.Name, a.ReadOnlyHint, a.DestructiveHint, a.IdempotentHint)
	}
	// Output:
	// taskflow_start          read-only=false destructive=false idempotent=false
	// taskflow_status         read-only=true  destructive=false idempotent=true
	// taskflow_advance        read-only=false destructive=true  idempotent=false
	// taskflow_wait           read-only=false destructive=false idempotent=true
	// taskflow_finish         read-only=false destructive=true  idempotent=true
	// taskflow_fail           read-only=false destructive=true  idempotent=true
	// taskflow_cancel         read-only=false destructive=true  idempotent=true
	// taskflow_list_mine      read-only=true  destructive=false idempotent=true
	// taskflow_spawn          read-only=false destructive=false idempotent=true
	// taskflow_wait_children  read-only=false destructive=false idempotent=true
	// taskflow_list_children  read-only=true  destructive=false idempotent=true
	// taskflow_explain        read-only=true  destructive=false idempotent=true
	// taskflow_schedule       read-only=false destructive=true  idempotent=true
	// taskflow_list_schedules read-only=true  destructive=false idempotent=true
	// taskflow_unschedule     read-only=false destructive=true  idempotent=true
}

// A model using the strict OpenAI definitions calls a per-action tool with
// every property present and its state as a JSON string.
func ExampleTool_CallTool() {
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

	session := agenttool.Session{AgentID: "kate", SessionID: "chat-42"}
	out, err := tool.CallTool(context.Background(), session, "taskflow_start", json.RawMessage(
		`{"controller_id":"kate/inbox-triage","goal":"triage today's inbox","current_step":null,"state_json":"{\"processed\":0}"}`))
	if err != nil {
		panic(err)
	}
	var res struct {
		Flow struct {
			Status string          `json:"status"`
			State  json.RawMessage `json:"state"`
		} `json:"flow"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		panic(err)
	}
	fmt.Println(res.Flow.Status, string(res.Flow.State))
	// Output:
	// running {"processed":0}
}
