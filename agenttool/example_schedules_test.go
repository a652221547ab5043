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

// A model schedules its own follow-up: a digest every weekday at 8:00
// Madrid time. Another session of the agent does not see it.
func ExampleTool_Call_schedule() {
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
	ctx := context.Background()
	call := func(s agenttool.Session, args string) string {
		out, err := tool.Call(ctx, s, json.RawMessage(args))
		if err != nil {
			panic(err)
		}
		return string(out)
	}
	kate := agenttool.Session{AgentID: "kate", SessionID: "chat-42"}
	call(kate, `{"action":"schedule","name":"digest","cron":"0 8 * * MON-FRI","time_zone":"Europe/Madrid",
		"controller_id":"kate/digest","goal":"send the morning digest"}`)

	var mine struct {
		Count     int
		Schedules []struct{ Name, Cron, TimeZone string }
	}
	if err := json.Unmarshal([]byte(call(kate, `{"action":"list_schedules"}`)), &mine); err != nil {
		panic(err)
	}
	fmt.Println(mine.Count, mine.Schedules[0].Name, mine.Schedules[0].Cron)
	other := agenttool.Session{AgentID: "kate", SessionID: "chat-7"}
	fmt.Println(call(other, `{"action":"list_schedules"}`))
	fmt.Println(call(other, `{"action":"unschedule","name":"digest"}`))
	fmt.Println(call(kate, `{"action":"unschedule","name":"digest"}`))
	// Output:
	// 1 digest 0 8 * * MON-FRI
	// {"ok":true,"count":0,"schedules":[]}
	// {"ok":false,"name":"digest","error":"not_found"}
	// {"ok":true,"name":"digest","deleted":true}
}
