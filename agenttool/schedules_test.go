package agenttool

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

func TestSchedule(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		res := callOK(t, tool, sessA, args(t, "action", "schedule", "name", "digest", "cron", "0 8 * * MON-FRI",
			"time_zone", "Europe/Madrid", "controller_id", "kate/digest", "goal", "send the digest", "state", map[string]any{"to": "me"}))
		sc := res["schedule"].(map[string]any)
		if sc["name"] != "digest" || sc["cron"] != "0 8 * * MON-FRI" || sc["time_zone"] != "Europe/Madrid" || sc["controller_id"] != "kate/digest" ||
			sc["next_fire"] == "" || sc["paused"] != false || res["replaced"] != nil {
			t.Fatalf("schedule: %v", res)
		}
		// Stored under the session's namespace; its flows are the session's.
		stored, err := e.m.GetSchedule(e.ctx, scheduleNamespace(sessA)+"digest", 1)
		if err != nil {
			t.Fatal(err)
		}
		if stored.Flow.OwnerSessionKey != sessA.OwnerKey() || stored.Flow.RequesterOrigin != "s-1" || stored.Flow.CurrentStep != "init" {
			t.Fatalf("stored flow input %+v", stored.Flow)
		}

		// An interval schedule fires through the engine; the flow is the session's.
		res = callOK(t, tool, sessA, args(t, "action", "schedule", "name", "poll", "every_seconds", 60, "controller_id", "kate/poll", "goal", "poll"))
		next, _ := time.Parse(time.RFC3339, res["schedule"].(map[string]any)["next_fire"].(string))
		e.clock.Advance(next.Sub(e.clock.Now()) + time.Second)
		if rep := e.engine().Tick(e.ctx); rep.Fired != 1 || rep.Err != nil {
			t.Fatalf("tick: %+v", rep)
		}
		res = callOK(t, tool, sessA, args(t, "action", "list_schedules"))
		if num(t, res["count"]) != 2 {
			t.Fatalf("list_schedules: %v", res)
		}
		poll := res["schedules"].([]any)[1].(map[string]any)
		if poll["name"] != "poll" || num(t, poll["every_seconds"]) != 60 || num(t, poll["fired"]) != 1 {
			t.Fatalf("poll: %v", poll)
		}
		flow := callFlow(t, tool, sessA, args(t, "action", "status", "flow_id", poll["last_flow_id"]))
		if flow["goal"] != "poll" || flow["state"].(map[string]any)["schedule"].(map[string]any)["name"] != scheduleNamespace(sessA)+"poll" {
			t.Fatalf("fired flow %v", flow)
		}

		// The same name again replaces it; an operator's pause stays.
		if _, err := e.m.PauseSchedule(e.ctx, scheduleNamespace(sessA)+"poll", "operator says no"); err != nil {
			t.Fatal(err)
		}
		res = callOK(t, tool, sessA, args(t, "action", "schedule", "name", "poll", "every_seconds", 120, "controller_id", "kate/poll", "goal", "poll less"))
		if res["replaced"] != true || num(t, res["schedule"].(map[string]any)["every_seconds"]) != 120 || res["schedule"].(map[string]any)["paused"] != true {
			t.Fatalf("replace: %v", res)
		}
		if sc, err := e.m.GetSchedule(e.ctx, scheduleNamespace(sessA)+"poll", 1); err != nil || !sc.Paused || sc.Note != "operator says no" || sc.Flow.Goal != "poll less" {
			t.Fatalf("replaced schedule %+v %v", sc, err)
		}

		// unschedule deletes it; again is not_found; the flows stay.
		res = callOK(t, tool, sessA, args(t, "action", "unschedule", "name", "poll"))
		if res["deleted"] != true || res["name"] != "poll" {
			t.Fatalf("unschedule: %v", res)
		}
		raw, err := callRaw(t, tool, sessA, args(t, "action", "unschedule", "name", "poll"))
		if err != nil || decodeResult(t, raw)["error"] != "not_found" || decodeResult(t, raw)["ok"] != false {
			t.Fatalf("unschedule again: %s %v", raw, err)
		}
		callFlow(t, tool, sessA, args(t, "action", "status", "flow_id", poll["last_flow_id"]))
		mustVerify(t, e)
	})
}

// TestScheduleTenancy: a session sees, replaces and deletes only its own
// schedules, and schedules only its agent's controllers.
func TestScheduleTenancy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		callOK(t, tool, sessA, args(t, "action", "schedule", "name", "mine", "every_seconds", 3600, "controller_id", "kate/x", "goal", "a's",
			"state", map[string]any{"secret": "a-secret-77"}))
		// An operator's schedule outside every namespace.
		if _, err := e.m.CreateSchedule(e.ctx, taskflow.ScheduleInput{Name: "ops/mine", Every: time.Hour,
			Flow: taskflow.CreateManagedInput{ControllerID: "kate/x", Goal: "ops", OwnerSessionKey: sessA.OwnerKey()}}); err != nil {
			t.Fatal(err)
		}
		for _, other := range []Session{sessB, sessC} {
			res := callOK(t, tool, other, args(t, "action", "list_schedules"))
			if num(t, res["count"]) != 0 || len(res["schedules"].([]any)) != 0 {
				t.Fatalf("%+v sees %v", other, res)
			}
			before := e.dump()
			raw, err := callRaw(t, tool, other, args(t, "action", "unschedule", "name", "mine"))
			if err != nil || decodeResult(t, raw)["error"] != "not_found" {
				t.Fatalf("%+v unschedules a's: %s %v", other, raw, err)
			}
			e.sameDump(t, before, "another session's unschedule")
			// Its own "mine" is another schedule.
			callOK(t, tool, other, args(t, "action", "schedule", "name", "mine", "every_seconds", 3600,
				"controller_id", strings.TrimSpace(other.AgentID)+"/x", "goal", "other's"))
		}
		res := callOK(t, tool, sessA, args(t, "action", "list_schedules"))
		if num(t, res["count"]) != 1 || res["schedules"].([]any)[0].(map[string]any)["goal"] != "a's" {
			t.Fatalf("a's schedules after the others': %v", res)
		}
		// Controllers: the agent's namespace only, exactly as start.
		before := e.dump()
		err := callErr(t, tool, sessC, args(t, "action", "schedule", "name", "steal", "every_seconds", 60, "controller_id", "kate/x", "goal", "g"), ErrArgs)
		wantText(t, err, "outside this agent's namespace")
		e.sameDump(t, before, "a schedule of another agent's controller")
		// A host's controller policy applies to schedules as to start.
		strict := New(e.m, WithAllowedControllers("shared/x"))
		callErr(t, strict, sessA, args(t, "action", "schedule", "name", "n", "every_seconds", 60, "controller_id", "kate/x", "goal", "g"), ErrArgs)
		callOK(t, strict, sessA, args(t, "action", "schedule", "name", "n", "every_seconds", 60, "controller_id", "shared/x", "goal", "g"))
	})
}

func TestScheduleBounds(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		for i := range MaxSchedulesPerSession {
			callOK(t, tool, sessA, args(t, "action", "schedule", "name", fmt.Sprintf("s%03d", i), "every_seconds", 3600, "controller_id", "kate/x", "goal", "g"))
		}
		before := e.dump()
		err := callErr(t, tool, sessA, args(t, "action", "schedule", "name", "one-more", "every_seconds", 3600, "controller_id", "kate/x", "goal", "g"), ErrArgs)
		wantText(t, err, "100 schedules", "unschedule one first")
		e.sameDump(t, before, "a schedule over the cap")
		// Replacing one is allowed at the cap; another session has its own cap.
		callOK(t, tool, sessA, args(t, "action", "schedule", "name", "s000", "every_seconds", 7200, "controller_id", "kate/x", "goal", "g"))
		callOK(t, tool, sessB, args(t, "action", "schedule", "name", "s000", "every_seconds", 7200, "controller_id", "kate/x", "goal", "g"))
		res := callOK(t, tool, sessA, args(t, "action", "list_schedules"))
		if num(t, res["count"]) != MaxSchedulesPerSession {
			t.Fatalf("count %v", res["count"])
		}
		callOK(t, tool, sessA, args(t, "action", "unschedule", "name", "s050"))
		callOK(t, tool, sessA, args(t, "action", "schedule", "name", "one-more", "every_seconds", 3600, "controller_id", "kate/x", "goal", "g"))
	})
}

func TestScheduleArguments(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		before := e.dump()
		for _, c := range []struct {
			args string
			want string
		}{
			{args(t, "action", "schedule", "every_seconds", 60, "controller_id", "kate/x", "goal", "g"), `needs "name"`},
			{args(t, "action", "schedule", "name", "a b", "every_seconds", 60, "controller_id", "kate/x", "goal", "g"), "only letters, digits"},
			{args(t, "action", "schedule", "name", strings.Repeat("n", 101), "every_seconds", 60, "controller_id", "kate/x", "goal", "g"), "at most 100"},
			{args(t, "action", "schedule", "name", "n", "controller_id", "kate/x", "goal", "g"), `needs "cron"`},
			{args(t, "action", "schedule", "name", "n", "cron", "@daily", "every_seconds", 60, "controller_id", "kate/x", "goal", "g"), "not both"},
			{args(t, "action", "schedule", "name", "n", "every_seconds", 59, "controller_id", "kate/x", "goal", "g"), "60 to"},
			{args(t, "action", "schedule", "name", "n", "every_seconds", 60, "time_zone", "UTC", "controller_id", "kate/x", "goal", "g"), "with \"cron\" only"},
			{args(t, "action", "schedule", "name", "n", "cron", "61 * * * *", "controller_id", "kate/x", "goal", "g"), "minute"},
			{args(t, "action", "schedule", "name", "n", "cron", "@daily", "time_zone", "Mars/Base", "controller_id", "kate/x", "goal", "g"), "Mars/Base"},
			{args(t, "action", "schedule", "name", "n", "cron", "@daily", "goal", "g"), `needs "controller_id"`},
			{args(t, "action", "schedule", "name", "n", "cron", "@daily", "controller_id", "kate/x"), `needs "goal"`},
			{args(t, "action", "schedule", "name", "n", "cron", "@daily", "controller_id", "kate/x", "goal", "g", "state", []int{1}), "state"},
			{args(t, "action", "schedule", "name", "n", "cron", "@daily", "controller_id", "kate/x", "goal", "g", "state", map[string]any{"schedule": 1}), "schedule"},
			{args(t, "action", "schedule", "name", "n", "cron", "@daily", "controller_id", "kate/x", "goal", "g", "flow_id", uuid.NewString()), `does not take an argument "flow_id"`},
			{args(t, "action", "list_schedules", "name", "n"), `does not take an argument "name"`},
			{args(t, "action", "unschedule"), `needs "name"`},
		} {
			raw, err := callRaw(t, tool, sessA, c.args)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Call(%s) = %s, %v; want an error containing %q", c.args, raw, err, c.want)
				continue
			}
			if !strings.Contains(err.Error(), "invalid tool arguments") {
				t.Errorf("Call(%s): %v does not wrap ErrArgs", c.args, err)
			}
			if strings.Contains(err.Error(), "tool/") {
				t.Errorf("Call(%s): %v shows the namespace", c.args, err)
			}
		}
		e.sameDump(t, before, "refused schedule calls")
	})
}

// The strict and Gemini forms carry state as state_json, through
// CallTool as through Call.
func TestScheduleStrictForm(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		raw, err := tool.CallTool(e.ctx, sessA, NamePrefix+ActionSchedule, []byte(`{"name":"n","cron":null,"every_seconds":3600,"time_zone":null,
			"controller_id":"kate/x","goal":"g","current_step":null,"state_json":"{\"k\":\"v\"}"}`))
		if err != nil || decodeResult(t, raw)["ok"] != true {
			t.Fatalf("CallTool: %s %v", raw, err)
		}
		sc, err := e.m.GetSchedule(e.ctx, scheduleNamespace(sessA)+"n", 1)
		if err != nil || string(sc.Flow.State.(json.RawMessage)) != `{"k":"v"}` {
			t.Fatalf("stored %+v %v", sc, err)
		}
	})
}
