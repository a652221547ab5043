package taskflow_test

import (
	"context"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
)

// A schedule every 15 minutes: the engine's tick makes one flow per fire,
// with an id derived from the schedule and the fire time (so any number
// of engines make it once), and its state says which fire made it.
func ExampleManager_CreateSchedule() {
	mr, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer mr.Close()
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	now := time.Date(2026, 3, 29, 0, 0, 0, 0, time.UTC)
	store, err := taskflow.NewRedisStore(client, taskflow.WithClock(func() time.Time { return now }))
	if err != nil {
		log.Fatal(err)
	}
	m := taskflow.NewManager(store)
	s, err := m.CreateSchedule(ctx, taskflow.ScheduleInput{
		Name: "feed/check",
		Cron: "*/15 * * * *", TimeZone: "Europe/Madrid",
		Flow: taskflow.CreateManagedInput{
			ControllerID: "feeds", Goal: "check the feed", OwnerSessionKey: "agent:1",
			State: map[string]any{"feed": "news"},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("next fire:", s.NextFire.Format(time.RFC3339))

	engine := taskflow.NewWaitEngine(m)
	now = s.NextFire
	rep := engine.TickAt(ctx, now)
	fmt.Println("fired:", rep.Fired)

	d, err := m.GetSchedule(ctx, "feed/check", 3)
	if err != nil {
		log.Fatal(err)
	}
	f, err := m.Get(ctx, d.LastFire.FlowID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("flow:", f.Goal, strings.Replace(string(f.State), s.ID.String(), "<schedule id>", 1))
	// The next fires in Madrid time: 02:00 does not exist that night.
	madrid, err := time.LoadLocation("Europe/Madrid")
	if err != nil {
		log.Fatal(err)
	}
	for _, at := range d.Upcoming {
		fmt.Println("upcoming:", at.In(madrid).Format("15:04 MST"))
	}
	// Output:
	// next fire: 2026-03-29T00:15:00Z
	// fired: 1
	// flow: check the feed {"feed":"news","schedule":{"at":"2026-03-29T00:15:00Z","id":"<schedule id>","name":"feed/check"}}
	// upcoming: 01:30 CET
	// upcoming: 01:45 CET
	// upcoming: 03:00 CEST
}

// Backfill a day of an hourly report, pause the schedule and trigger one
// run by hand: a backfilled fire has the id its regular fire would have,
// so making it again makes nothing new.
func ExampleManager_BackfillSchedule() {
	mr, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer mr.Close()
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	now := time.Date(2026, 12, 5, 12, 30, 0, 0, time.UTC)
	store, err := taskflow.NewRedisStore(client, taskflow.WithClock(func() time.Time { return now }))
	if err != nil {
		log.Fatal(err)
	}
	m := taskflow.NewManager(store)
	if _, err := m.CreateSchedule(ctx, taskflow.ScheduleInput{
		Name: "report/hourly", Cron: "@hourly",
		Flow: taskflow.CreateManagedInput{ControllerID: "reports", Goal: "the hourly report", OwnerSessionKey: "ops"},
	}); err != nil {
		log.Fatal(err)
	}
	from := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	fires, err := m.BackfillSchedule(ctx, "report/hourly", from, from.Add(24*time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	again, err := m.BackfillSchedule(ctx, "report/hourly", from, from.Add(2*time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("backfilled:", len(fires), "first:", fires[0].At.Format(time.RFC3339), "again the same flow:", again[0].FlowID == fires[0].FlowID)

	if _, err := m.PauseSchedule(ctx, "report/hourly", "the warehouse is down"); err != nil {
		log.Fatal(err)
	}
	if _, err := m.TriggerSchedule(ctx, "report/hourly"); err != nil {
		log.Fatal(err)
	}
	s, err := m.GetSchedule(ctx, "report/hourly", 0)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("paused:", s.Paused, s.Note, "| fired:", s.Fired, "| last:", s.Recent[0].Reason)
	// Output:
	// backfilled: 24 first: 2026-12-04T00:00:00Z again the same flow: true
	// paused: true the warehouse is down | fired: 25 | last: trigger
}
