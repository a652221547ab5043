package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/taskflow-dev/taskflow"
)

// flowArgs are the flags of the flow each fire of a test schedule makes.
var flowArgs = []string{"--controller", "test/cli", "--goal", "check the feed", "--owner", ownerA}

func TestScheduleLifecycle(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		var sc taskflow.Schedule
		e.runJSON(&sc, append([]string{"schedule", "create", "feed", "--cron", "*/15 * * * *", "--tz", "Europe/Madrid",
			"--overlap", "allow_all", "--catch-up", "all", "--catch-up-window", "2h", "--catch-up-max", "5",
			"--jitter", "10s", "--state", `{"feed":"news"}`}, flowArgs...)...)
		if sc.Name != "feed" || sc.Cron != "*/15 * * * *" || sc.TimeZone != "Europe/Madrid" || sc.Overlap != taskflow.OverlapAllowAll ||
			sc.CatchUp != taskflow.CatchUpAll || sc.CatchUpWindow != 2*time.Hour || sc.CatchUpMax != 5 || sc.Jitter != 10*time.Second ||
			sc.Flow.ControllerID != "test/cli" || sc.Flow.OwnerSessionKey != ownerA || sc.NextFire.IsZero() || sc.NextFire.Minute()%15 != 0 {
			t.Fatalf("created %+v", sc)
		}
		r := e.run(append([]string{"schedule", "create", "hourly", "--every", "1h", "--paused", "--note", "not yet"}, flowArgs...)...).wantCode(t, 0)
		if !strings.Contains(r.stdout, "schedule hourly created (paused, revision 1)") {
			t.Fatalf("create printed %q", r.stdout)
		}
		e.run(append([]string{"schedule", "create", "hourly", "--every", "1h"}, flowArgs...)...).wantCode(t, 1).wantOneLineError(t, `schedule "hourly" exists already`)

		// list: both, with policies and state.
		r = e.run("schedule", "list").wantCode(t, 0)
		for _, want := range []string{"NAME", "feed", "*/15 * * * * (Europe/Madrid)", "allow_all", "all", "active", "hourly", "every 1h", "paused"} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("list lacks %q:\n%s", want, r.stdout)
			}
		}
		var page scheduleList
		e.runJSON(&page, "schedule", "list", "--limit", "1")
		if len(page.Schedules) != 1 || page.Schedules[0].Name != "feed" || page.Next != "feed" {
			t.Fatalf("page 1: %+v", page)
		}
		var page2 scheduleList
		e.runJSON(&page2, "schedule", "list", "--limit", "1", "--cursor", page.Next)
		if len(page2.Schedules) != 1 || page2.Schedules[0].Name != "hourly" || page2.Next != "" {
			t.Fatalf("page 2: %+v", page2)
		}

		// pause and resume, checked in Redis through the library.
		r = e.run("schedule", "pause", "feed", "--note", "feed is down").wantCode(t, 0)
		if !strings.Contains(r.stdout, "schedule feed paused") {
			t.Fatalf("pause printed %q", r.stdout)
		}
		if got, err := e.m.GetSchedule(ctx, "feed", 1); err != nil || !got.Paused || got.Note != "feed is down" || !got.NextFire.IsZero() {
			t.Fatalf("after pause: %+v %v", got, err)
		}
		r = e.run("schedule", "show", "feed").wantCode(t, 0)
		if !strings.Contains(r.stdout, "paused: feed is down") {
			t.Fatalf("show of a paused schedule:\n%s", r.stdout)
		}
		e.run("schedule", "resume", "feed").wantCode(t, 0)
		if got, err := e.m.GetSchedule(ctx, "feed", 1); err != nil || got.Paused || got.NextFire.IsZero() {
			t.Fatalf("after resume: %+v %v", got, err)
		}

		// update changes only the flags given.
		e.runJSON(&sc, "schedule", "update", "feed", "--goal", "check the feed twice")
		if sc.Flow.Goal != "check the feed twice" || sc.Cron != "*/15 * * * *" || sc.Overlap != taskflow.OverlapAllowAll || sc.Revision != 4 {
			t.Fatalf("updated %+v", sc)
		}
		e.run("schedule", "update", "feed", "--goal", "x", "--revision", "2").wantCode(t, 1).wantOneLineError(t, "revision")
		e.run("schedule", "update", "feed").wantCode(t, 2).wantOneLineError(t, "nothing to change")
		e.runJSON(&sc, "schedule", "update", "hourly", "--cron", "0 8 * * MON-FRI")
		if sc.Cron != "0 8 * * MON-FRI" || sc.Every != 0 || !sc.Paused {
			t.Fatalf("update to cron: %+v", sc)
		}

		// trigger makes a flow now; show lists it with its status.
		var f taskflow.Flow
		e.runJSON(&f, "schedule", "trigger", "feed")
		var st map[string]any
		if err := json.Unmarshal(e.get(f.ID).State, &st); err != nil || st["feed"] != "news" || st["schedule"].(map[string]any)["name"] != "feed" {
			t.Fatalf("triggered flow's state %v (%v)", st, err)
		}
		if f.Goal != "check the feed twice" {
			t.Fatalf("triggered flow %+v", f)
		}
		r = e.run("schedule", "show", "feed", "--next", "3").wantCode(t, 0)
		for _, want := range []string{"when", "*/15 * * * * (Europe/Madrid)", "all (window 2h, max 5)", "next fires:", "recent fires:", f.ID.String(), "trigger", "created"} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("show lacks %q:\n%s", want, r.stdout)
			}
		}
		next := strings.Split(strings.Split(r.stdout, "next fires:\n")[1], "recent fires:")[0]
		if n := strings.Count(next, "\n"); n != 3 {
			t.Fatalf("show --next 3 printed %d times:\n%s", n, next)
		}
		var shown scheduleShow
		e.runJSON(&shown, "schedule", "show", "feed")
		if len(shown.Upcoming) != 10 || len(shown.Recent) != 1 || shown.Recent[0].FlowID != f.ID || shown.FlowStatus[f.ID.String()] != taskflow.StatusCreated {
			t.Fatalf("show --json: %+v", shown)
		}

		// backfill: every quarter hour of an hour past, one flow each, once.
		from := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
		args := []string{"schedule", "backfill", "feed", "--from", from.Format(time.RFC3339), "--to", from.Add(time.Hour).Format(time.RFC3339)}
		var fires []taskflow.ScheduleFire
		e.runJSON(&fires, args...)
		if len(fires) != 4 || !fires[0].At.Equal(from) {
			t.Fatalf("backfill: %+v", fires)
		}
		for _, fi := range fires {
			if e.get(fi.FlowID).Goal != "check the feed twice" {
				t.Fatal("backfilled flow missing")
			}
		}
		var again []taskflow.ScheduleFire
		e.runJSON(&again, args...)
		if len(again) != 4 || again[3].FlowID != fires[3].FlowID {
			t.Fatalf("backfill again: %+v", again)
		}
		r = e.run(args...).wantCode(t, 0)
		if !strings.Contains(r.stdout, "4 fires backfilled") || !strings.Contains(r.stdout, fires[0].FlowID.String()) {
			t.Fatalf("backfill printed %q", r.stdout)
		}

		// delete: gone, its flows stay.
		r = e.run("schedule", "delete", "feed").wantCode(t, 0)
		if !strings.Contains(r.stdout, "schedule feed deleted") {
			t.Fatalf("delete printed %q", r.stdout)
		}
		e.get(f.ID)
		e.run("schedule", "show", "feed").wantCode(t, 1).wantOneLineError(t, `schedule "feed" not found`)
		e.run("schedule", "delete", "feed").wantCode(t, 1).wantOneLineError(t, `schedule "feed" not found`)
		e.run("schedule", "trigger", "feed", "--json").wantCode(t, 1).wantJSONError(t, `schedule "feed" not found`)
		e.run("schedule", "delete", "hourly").wantCode(t, 0)
		r = e.run("schedule", "list").wantCode(t, 0)
		if strings.TrimSpace(r.stdout) != "no schedules" {
			t.Fatalf("list after delete: %q", r.stdout)
		}
	})
}

// TestScheduleTickAndStats: a due schedule fires in 'taskflow tick', and
// 'taskflow stats' counts it.
func TestScheduleTickAndStats(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		sc, err := e.m.CreateSchedule(ctx, taskflow.ScheduleInput{Name: "every-second", Every: time.Second,
			Flow: taskflow.CreateManagedInput{ControllerID: "test/cli", Goal: "tick", OwnerSessionKey: ownerA}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.CreateSchedule(ctx, taskflow.ScheduleInput{Name: "paused", Every: time.Hour, Paused: true,
			Flow: taskflow.CreateManagedInput{ControllerID: "test/cli", Goal: "tick", OwnerSessionKey: ownerA}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(sc.NextFire) + 50*time.Millisecond)
		r := e.run("tick").wantCode(t, 0)
		if !strings.Contains(r.stdout, "fired           1") || !strings.Contains(r.stdout, "skipped         0") {
			t.Fatalf("tick:\n%s", r.stdout)
		}
		got, err := e.m.GetSchedule(ctx, "every-second", 1)
		if err != nil || got.Fired != 1 || got.LastFire == nil || !got.LastFire.At.Equal(sc.NextFire) {
			t.Fatalf("after the tick: %+v %v", got, err)
		}
		e.get(got.LastFire.FlowID)
		r = e.run("stats").wantCode(t, 0)
		for _, want := range []string{"schedules  ", "2 (1 paused, ", "schedule fires", "1 (0 skipped)"} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("stats lacks %q:\n%s", want, r.stdout)
			}
		}
		var st taskflow.Stats
		e.runJSON(&st, "stats")
		if st.Schedules != 2 || st.SchedulesPaused != 1 || st.ScheduleFires != 1 {
			t.Fatalf("stats --json: %+v", st)
		}
	})
}

func TestScheduleBadInput(t *testing.T) {
	// Refused before any connection.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"schedule"}, "schedule: missing action (create, update"},
		{[]string{"schedule", "crate"}, `unknown action "crate"; did you mean "create"?`},
		{[]string{"schedule", "create"}, "missing <name>"},
		{append([]string{"schedule", "create", "x"}, flowArgs...), "give --cron EXPR or --every D"},
		{append([]string{"schedule", "create", "x", "--cron", "@daily", "--every", "1h"}, flowArgs...), "not both"},
		{[]string{"schedule", "create", "x", "--every", "1h", "--goal", "g", "--owner", "o"}, "--controller is required"},
		{append([]string{"schedule", "create", "x", "--every", "soon"}, flowArgs...), "want a duration"},
		{append([]string{"schedule", "create", "x", "--every", "1h", "--overlap", "queue"}, flowArgs...), `--overlap "queue": want skip, buffer_one`},
		{append([]string{"schedule", "create", "x", "--every", "1h", "--catch-up", "some"}, flowArgs...), `--catch-up "some": want none, last or all`},
		{append([]string{"schedule", "create", "x", "--every", "1h", "--start", "tomorrow"}, flowArgs...), `--start "tomorrow" is not an RFC 3339 time`},
		{append([]string{"schedule", "create", "x", "--every", "1h", "--state", "[1]"}, flowArgs...), "--state is not a JSON object"},
		{[]string{"schedule", "backfill", "x", "--to", "2026-01-01T00:00:00Z"}, "--from TIME is required"},
		{[]string{"schedule", "show", "x", "--next", "0"}, "--next must be within 1..100"},
		{[]string{"schedule", "list", "--limit", "0"}, "--limit 0"},
		{[]string{"schedule", "pause"}, "missing <name>"},
		{[]string{"help", "schedule", "create", "x"}, "help takes one verb"},
	} {
		r := runCLI(t, c.args...)
		if r.code != 2 {
			t.Errorf("%v: exit status %d, want 2 (stderr %q)", c.args, r.code, r.stderr)
			continue
		}
		r.wantOneLineError(t, c.want)
	}
	if r := runCLI(t, "help", "schedule", "create").wantCode(t, 0); !strings.HasPrefix(r.stdout, "usage: taskflow schedule create <name>") {
		t.Fatalf("help schedule create: %q", r.stdout)
	}
	// Refused by the library, each naming the field.
	eachBackend(t, func(t *testing.T, e *testEnv) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"x", "--cron", "61 * * * *"}, "minute"},
			{[]string{"x", "--cron", "@daily", "--tz", "Mars/Olympus"}, "Mars/Olympus"},
			{[]string{"x", "--every", "500ms"}, "1s"},
			{[]string{"bad name!", "--every", "1h"}, "name"},
			{[]string{"x", "--every", "1h", "--tz", "UTC"}, "time_zone"},
			{[]string{"x", "--every", "1h", "--jitter", "2h"}, "jitter"},
			{[]string{"x", "--every", "1h", "--state", `{"schedule":1}`}, "schedule"},
		} {
			r := e.run(append(append([]string{"schedule", "create"}, c.args...), flowArgs...)...)
			if r.code != 2 {
				t.Errorf("%v: exit status %d, want 2 (stderr %q)", c.args, r.code, r.stderr)
				continue
			}
			r.wantOneLineError(t, c.want)
		}
		if s, _, err := e.m.ListSchedules(context.Background()); err != nil || len(s) != 0 {
			t.Fatalf("bad input left schedules: %v %v", s, err)
		}
		e.create(ownerA, "the flow space exists")
		e.run("schedule", "backfill", "x", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02T00:00:00Z").
			wantCode(t, 1).wantOneLineError(t, `schedule "x" not found`)
	})
}
