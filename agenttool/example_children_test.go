package agenttool_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/agenttool"
)

// A model splits its job into child flows and waits on them; the host's
// workers finish the children, and the model's flow resumes with their
// outcomes under "children".
func ExampleTool_Call_children() {
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
	m := taskflow.NewManager(store)
	tool := agenttool.New(m)
	ctx := context.Background()
	session := agenttool.Session{AgentID: "kate", SessionID: "chat-42"}
	call := func(args string) json.RawMessage {
		out, err := tool.Call(ctx, session, json.RawMessage(args))
		if err != nil {
			panic(err)
		}
		return out
	}
	var res struct {
		Flow struct {
			ID     string `json:"id"`
			Status string `json:"status"`
			State  struct {
				Children struct {
					Total    int    `json:"total"`
					Finished int    `json:"finished"`
					Why      string `json:"why"`
				} `json:"children"`
			} `json:"state"`
		} `json:"flow"`
		Flows []struct {
			ID       string `json:"id"`
			ChildKey string `json:"child_key"`
		} `json:"flows"`
	}
	_ = json.Unmarshal(call(`{"action":"start","controller_id":"kate/book","goal":"write the book"}`), &res)
	book := res.Flow.ID

	_ = json.Unmarshal(call(`{"action":"spawn","flow_id":"`+book+`","children":[
		{"key":"ch-1","controller_id":"kate/chapter","goal":"write chapter 1"},
		{"key":"ch-2","controller_id":"kate/chapter","goal":"write chapter 2"}]}`), &res)
	children := res.Flows
	for _, c := range children {
		fmt.Println("spawned", c.ChildKey)
	}
	_ = json.Unmarshal(call(`{"action":"wait_children","flow_id":"`+book+`"}`), &res)
	fmt.Println("book:", res.Flow.Status)

	// The host's workers finish the children.
	for _, c := range children {
		if _, err := m.Finish(ctx, uuid.MustParse(c.ID), map[string]any{"done": true}); err != nil {
			panic(err)
		}
	}
	_ = json.Unmarshal(call(`{"action":"status","flow_id":"`+book+`"}`), &res)
	sum := res.Flow.State.Children
	fmt.Printf("book: %s, children %d of %d finished (%s)\n", res.Flow.Status, sum.Finished, sum.Total, sum.Why)
	// Output:
	// spawned ch-1
	// spawned ch-2
	// book: waiting
	// book: running, children 2 of 2 finished (met)
}
