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

// A model waits for an email reply through the tool; the host, on the
// reply for agent kate, resumes it by correlation under kate's topic.
func ExampleTopic() {
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
	kate := agenttool.Session{AgentID: "kate", SessionID: "chat-42"}

	call := func(args string) map[string]any {
		out, err := tool.Call(ctx, kate, json.RawMessage(args))
		if err != nil {
			panic(err)
		}
		var res struct{ Flow map[string]any }
		if err := json.Unmarshal(out, &res); err != nil {
			panic(err)
		}
		return res.Flow
	}
	f := call(`{"action":"start","controller_id":"kate/inbox-triage","goal":"answer Bob"}`)
	call(`{"action":"wait","flow_id":"` + f["id"].(string) + `","wait_condition":
		{"kind":"external_event","topic":"email.reply","correlation_id":"msg-8812"}}`)

	// The host's mail hook, on Bob's reply to kate's message msg-8812:
	resumed, err := m.ResumeByCorrelation(ctx, agenttool.Topic("kate", "email.reply"), "msg-8812",
		map[string]string{"from": "bob", "body": "yes"})
	if err != nil {
		panic(err)
	}
	fmt.Println("resumed:", len(resumed))
	fmt.Println("stored topic:", agenttool.Topic("kate", "email.reply"))
	st := call(`{"action":"status","flow_id":"` + f["id"].(string) + `"}`)
	fmt.Println("status:", st["status"])
	// Output:
	// resumed: 1
	// stored topic: agent:kate:email.reply
	// status: running
}
