package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/taskflow-dev/taskflow"
)

// TestSchedulesInBrowser drives the dashboard's schedules pages in
// Chromium as an operator would: from the navigation to the list, to one
// schedule, pause (checked in Redis), resume, trigger, and from a recent
// fire to its flow.
func TestSchedulesInBrowser(t *testing.T) {
	realURL, err := realRedis()
	if err != nil {
		if os.Getenv("TASKFLOW_TEST_REQUIRE_REDIS") == "1" {
			t.Fatalf("real Redis required: %v", err)
		}
		t.Skip("real Redis unreachable")
	}
	bctx := newBrowser(t)
	e := newTestEnv(t, realURL)
	ctx := context.Background()
	flow := taskflow.CreateManagedInput{ControllerID: "reports/daily", Goal: "send the daily report", OwnerSessionKey: ownerA,
		State: map[string]any{"to": "ops@example.com"}}
	if _, err := e.m.CreateSchedule(ctx, taskflow.ScheduleInput{Name: "reports/daily", Cron: "0 8 * * MON-FRI", TimeZone: "Europe/Madrid",
		Overlap: taskflow.OverlapBufferOne, Flow: flow}); err != nil {
		t.Fatal(err)
	}
	poll := flow
	poll.ControllerID, poll.Goal = "feed/poll", "poll the feed"
	if _, err := e.m.CreateSchedule(ctx, taskflow.ScheduleInput{Name: "feed/poll", Every: 15 * time.Minute,
		CatchUp: taskflow.CatchUpAll, Flow: poll}); err != nil {
		t.Fatal(err)
	}
	// Fires of the last hours, as if the engines had made them.
	to := time.Now().UTC().Truncate(24 * time.Hour).Add(8 * time.Hour)
	if to.After(time.Now()) {
		to = to.Add(-24 * time.Hour)
	}
	if _, err := e.m.BackfillSchedule(ctx, "reports/daily", to.Add(-7*24*time.Hour), to.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	ui := startUI(t, e)

	browse(t, bctx, "overview", chromedp.Navigate(ui.base+"/"), chromedp.WaitVisible(chromedp.ID("overview")))
	if n, p := textOf(t, bctx, `[data-stat="schedules"]`), textOf(t, bctx, `[data-stat="schedules_paused"]`); n != "2" || p != "0" {
		t.Fatalf("overview: %s schedules, %s paused", n, p)
	}
	browse(t, bctx, "schedules list", chromedp.Click(chromedp.ID("nav-schedules")), chromedp.WaitVisible(chromedp.ID("schedules")))
	if n := eval[int](t, bctx, `document.querySelectorAll("#schedules tbody tr[data-schedule]").length`); n != 2 {
		t.Fatalf("%d schedules listed, want 2", n)
	}
	row := textOf(t, bctx, `#schedules tr[data-schedule="reports/daily"]`)
	for _, want := range []string{"0 8 * * MON-FRI (Europe/Madrid)", "buffer_one", "active", "5"} {
		if !strings.Contains(row, want) {
			t.Fatalf("row %q lacks %q", row, want)
		}
	}

	page := "/schedules/reports/daily"
	browse(t, bctx, "schedule page", chromedp.Click(chromedp.CSS(`#schedules a[href="`+page+`"]`)), chromedp.WaitVisible(chromedp.ID("upcoming")))
	if n := eval[int](t, bctx, `document.querySelectorAll("#upcoming li").length`); n != 10 {
		t.Fatalf("%d next fires shown, want 10", n)
	}
	if n := eval[int](t, bctx, `document.querySelectorAll("#fires a[data-flow]").length`); n != 5 {
		t.Fatalf("%d recent fires with flows, want 5", n)
	}

	// Pause through the button, with a note: paused in Redis.
	browse(t, bctx, "pause", chromedp.SendKeys(chromedp.ID("note"), "report server down"),
		chromedp.Click(chromedp.ID("action-pause")), chromedp.WaitVisible(chromedp.CSS(`#notice[data-done="paused"]`)))
	sc, err := e.m.GetSchedule(ctx, "reports/daily", 1)
	if err != nil || !sc.Paused || sc.Note != "report server down" || !sc.NextFire.IsZero() {
		t.Fatalf("after pause: %+v %v", sc, err)
	}
	if s := textOf(t, bctx, `[data-field="state"]`); !strings.Contains(s, "paused") || !strings.Contains(s, "report server down") {
		t.Fatalf("state shown %q", s)
	}
	browse(t, bctx, "resume", chromedp.Click(chromedp.ID("action-resume")), chromedp.WaitVisible(chromedp.CSS(`#notice[data-done="resumed"]`)))
	if sc, err = e.m.GetSchedule(ctx, "reports/daily", 1); err != nil || sc.Paused || sc.NextFire.IsZero() {
		t.Fatalf("after resume: %+v %v", sc, err)
	}

	// Trigger: a flow now, the newest recent fire, linked to its flow.
	browse(t, bctx, "trigger", chromedp.Click(chromedp.ID("action-trigger")), chromedp.WaitVisible(chromedp.CSS(`#notice[data-done="triggered"]`)))
	if sc, err = e.m.GetSchedule(ctx, "reports/daily", 1); err != nil || sc.Fired != 6 || sc.Recent[0].Reason != "trigger" {
		t.Fatalf("after trigger: %+v %v", sc, err)
	}
	triggered := sc.Recent[0].FlowID.String()
	if got := eval[string](t, bctx, `document.querySelector("#fires a[data-flow]").dataset.flow`); got != triggered {
		t.Fatalf("newest fire links %s, want %s", got, triggered)
	}
	shot(t, bctx, "ui-schedules.png")
	browse(t, bctx, "to the flow", chromedp.Click(chromedp.CSS(`#fires a[data-flow="`+triggered+`"]`)), chromedp.WaitVisible(chromedp.ID("record")))
	if loc := eval[string](t, bctx, `location.pathname`); loc != "/flows/"+triggered {
		t.Fatalf("at %s", loc)
	}
	if g := textOf(t, bctx, `[data-field="goal"]`); !strings.Contains(g, "send the daily report") {
		t.Fatalf("flow page goal %q", g)
	}
}
