package agenttool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

var updateToolGolden = flag.Bool("update", false, "rewrite testdata/tool_schema.golden.json")

var (
	sessA = Session{AgentID: "kate", SessionID: "s-1"}
	sessB = Session{AgentID: "kate", SessionID: "s-2"} // same agent, other session
	sessC = Session{AgentID: "bob", SessionID: "s-1"}  // other agent, same session id
)

// toolFlowKeys are exactly the keys of a flow in a tool result.
var toolFlowKeys = []string{
	"cancel_requested", "controller_id", "created_at", "current_step", "goal",
	"id", "revision", "state", "status", "updated_at", "wait",
}

// callRaw runs one call and returns the raw result.
func callRaw(t *testing.T, tool *Tool, s Session, args string) (json.RawMessage, error) {
	t.Helper()
	return tool.Call(context.Background(), s, json.RawMessage(args))
}

// decodeResult parses a result, keeping numbers exact.
func decodeResult(t *testing.T, raw json.RawMessage) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("result %s: %v", raw, err)
	}
	return m
}

// callOK runs a call that must succeed with ok:true and returns the result.
func callOK(t *testing.T, tool *Tool, s Session, args string) map[string]any {
	t.Helper()
	raw, err := callRaw(t, tool, s, args)
	if err != nil {
		t.Fatalf("Call(%s): %v", args, err)
	}
	res := decodeResult(t, raw)
	if res["ok"] != true {
		t.Fatalf("Call(%s) = %s, want ok:true", args, raw)
	}
	return res
}

// callFlow runs a call that must succeed and returns its flow.
func callFlow(t *testing.T, tool *Tool, s Session, args string) map[string]any {
	t.Helper()
	res := callOK(t, tool, s, args)
	f, ok := res["flow"].(map[string]any)
	if !ok {
		t.Fatalf("Call(%s): no flow in %v", args, res)
	}
	checkFlowKeys(t, f)
	return f
}

// optionalFlowKeys are the keys of a flow in a tool result that only a
// child or a parent has.
var optionalFlowKeys = []string{"attributes", "child_key", "children", "parent_id"}

func checkFlowKeys(t *testing.T, f map[string]any) {
	t.Helper()
	keys := make([]string, 0, len(f))
	for k := range f {
		if !slices.Contains(optionalFlowKeys, k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if !reflect.DeepEqual(keys, toolFlowKeys) {
		t.Fatalf("flow keys = %v, want %v", keys, toolFlowKeys)
	}
	for _, k := range []string{"created_at", "updated_at"} {
		if _, err := time.Parse(time.RFC3339, f[k].(string)); err != nil {
			t.Fatalf("%s = %v is not RFC 3339: %v", k, f[k], err)
		}
	}
}

// callErr runs a call that must fail with target and returns the error.
func callErr(t *testing.T, tool *Tool, s Session, args string, target error) error {
	t.Helper()
	raw, err := callRaw(t, tool, s, args)
	if err == nil {
		t.Fatalf("Call(%s) = %s, want an error", args, raw)
	}
	if raw != nil {
		t.Fatalf("Call(%s) returned a result with its error: %s", args, raw)
	}
	if !errors.Is(err, target) {
		t.Fatalf("Call(%s): error = %v, want %v", args, err, target)
	}
	return err
}

func wantText(t *testing.T, err error, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not contain %q", err, p)
		}
	}
}

func num(t *testing.T, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v (%T) is not a number", v, v)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// args builds the arguments of a call.
func args(t *testing.T, kv ...any) string {
	t.Helper()
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// startFlow starts a flow through the tool and returns its id.
func startFlow(t *testing.T, tool *Tool, s Session, goal string) string {
	t.Helper()
	f := callFlow(t, tool, s, args(t, "action", "start", "controller_id", strings.TrimSpace(s.AgentID)+"/ctrl", "goal", goal))
	return f["id"].(string)
}

func TestStartAndStatus(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		raw, err := callRaw(t, tool, sessA, `{"action":"start","controller_id":" kate/inbox-triage ","goal":" triage the inbox ",
			"state":{"big":12345678901234567890,"f":0.1,"html":"<a&b>","empty":[],"u":"日本"},"revision":42}`)
		if err != nil {
			t.Fatal(err)
		}
		// The state comes back with its bytes (no HTML escaping, exact numbers).
		for _, want := range []string{`"big":12345678901234567890`, `"f":0.1`, `"html":"<a&b>"`, `"empty":[]`, `"u":"日本"`} {
			if !bytes.Contains(raw, []byte(want)) {
				t.Fatalf("result %s lacks %s", raw, want)
			}
		}
		res := decodeResult(t, raw)
		if len(res) != 2 || res["ok"] != true {
			t.Fatalf("result keys: %v", res)
		}
		f := res["flow"].(map[string]any)
		checkFlowKeys(t, f)
		if f["status"] != "running" || num(t, f["revision"]) != 1 || f["current_step"] != "init" ||
			f["controller_id"] != "kate/inbox-triage" || f["goal"] != "triage the inbox" ||
			f["wait"] != nil || f["cancel_requested"] != false {
			t.Fatalf("started flow: %v", f)
		}
		now := e.clock.Now().UTC()
		if f["created_at"] != now.Format(time.RFC3339Nano) || f["updated_at"] != now.Format(time.RFC3339Nano) {
			t.Fatalf("timestamps %v %v, want %v", f["created_at"], f["updated_at"], now)
		}
		id := uuid.MustParse(f["id"].(string))
		stored := must(t, try(e.m.Get(e.ctx, id)))
		if stored.OwnerSessionKey != "agent:kate:session:s-1" || stored.RequesterOrigin != "s-1" ||
			stored.Status != taskflow.StatusRunning || stored.Revision != 1 {
			t.Fatalf("stored flow: %+v", stored)
		}
		evs := must(t, try(e.m.ListEvents(e.ctx, id, 10)))
		if len(evs) != 2 || evs[0].Kind != taskflow.EventStarted || evs[1].Kind != taskflow.EventCreated {
			t.Fatalf("events: %+v", evs)
		}

		// status returns the same flow and changes nothing.
		before := e.dump()
		st := callFlow(t, tool, sessA, args(t, "action", "status", "flow_id", id.String()))
		if !reflect.DeepEqual(st, f) {
			t.Fatalf("status = %v, want %v", st, f)
		}
		e.sameDump(t, before, "status")

		// Explicit step; no state means {}.
		f2 := callFlow(t, tool, sessA, `{"action":" start ","controller_id":"kate/c","goal":"g","current_step":"fetch","state":null}`)
		if f2["current_step"] != "fetch" || !reflect.DeepEqual(f2["state"], map[string]any{}) {
			t.Fatalf("second flow: %v", f2)
		}
		f3 := callFlow(t, tool, sessA, `{"action":"start","controller_id":"kate/c","goal":"g","current_step":"   "}`)
		if f3["current_step"] != "init" {
			t.Fatalf("blank step: %v", f3)
		}
	})
}

func TestStartValidation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		before := e.dump()
		for _, c := range []struct{ args, text string }{
			{`{"action":"start","goal":"g"}`, "controller_id"},
			{`{"action":"start","controller_id":"  ","goal":"g"}`, "controller_id"},
			{`{"action":"start","controller_id":"kate/c"}`, "goal"},
			{`{"action":"start","controller_id":"kate/c","goal":" \t "}`, "goal"},
			{`{"action":"start","controller_id":"kate/c","goal":"g","state":[1,2]}`, `"state" must be a JSON object, not an array`},
			{`{"action":"start","controller_id":"kate/c","goal":"g","state":"{}"}`, `"state" must be a JSON object, not a string`},
			{`{"action":"start","controller_id":"kate/c","goal":"g","state":7}`, "not a number"},
			{`{"action":"start","controller_id":"kate/c","goal":5}`, `"goal" must be a string`},
		} {
			err := callErr(t, tool, sessA, c.args, ErrArgs)
			wantText(t, err, c.text)
		}
		e.sameDump(t, before, "refused starts")
	})
}

func TestAdvance(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		f := callFlow(t, tool, sessA, `{"action":"start","controller_id":"kate/c","goal":"g","state":{"a":1,"b":{"x":1}}}`)
		id := f["id"].(string)

		// A stale "revision" from the model is ignored: the tool never does
		// compare-and-set.
		f = callFlow(t, tool, sessA, `{"action":"advance","flow_id":"`+id+`","patch":{"b":{"y":2},"c":[]},"current_step":"step-2","revision":0}`)
		want := map[string]any{"a": json.Number("1"), "b": map[string]any{"y": json.Number("2")}, "c": []any{}}
		if !reflect.DeepEqual(f["state"], want) || f["current_step"] != "step-2" || num(t, f["revision"]) != 2 || f["status"] != "running" {
			t.Fatalf("advanced flow: %v", f)
		}
		// The step alone.
		f = callFlow(t, tool, sessA, `{"action":"advance","flow_id":"`+id+`","current_step":"step-3"}`)
		if f["current_step"] != "step-3" || num(t, f["revision"]) != 3 || !reflect.DeepEqual(f["state"], want) {
			t.Fatalf("step only: %v", f)
		}
		// The patch alone keeps the step.
		f = callFlow(t, tool, sessA, `{"action":"advance","flow_id":"`+id+`","patch":{"a":2}}`)
		if f["current_step"] != "step-3" || num(t, f["revision"]) != 4 {
			t.Fatalf("patch only: %v", f)
		}

		before := e.dump()
		err := callErr(t, tool, sessA, `{"action":"advance","flow_id":"`+id+`"}`, ErrArgs)
		wantText(t, err, "patch", "current_step")
		err = callErr(t, tool, sessA, `{"action":"advance","flow_id":"`+id+`","patch":null,"current_step":" "}`, ErrArgs)
		wantText(t, err, "patch", "current_step")
		err = callErr(t, tool, sessA, `{"action":"advance","flow_id":"`+id+`","patch":[1]}`, ErrArgs)
		wantText(t, err, `"patch" must be a JSON object`)
		e.sameDump(t, before, "refused advances")

		// A waiting flow can still record progress.
		callFlow(t, tool, sessA, `{"action":"wait","flow_id":"`+id+`","wait_condition":{"kind":"manual"}}`)
		f = callFlow(t, tool, sessA, `{"action":"advance","flow_id":"`+id+`","patch":{"note":"x"}}`)
		if f["status"] != "waiting" {
			t.Fatalf("advance while waiting: %v", f)
		}
	})
}

func TestWait(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		now := e.clock.Now()

		id := startFlow(t, tool, sessA, "timer")
		at := now.Add(2 * time.Hour).UTC().Truncate(time.Second)
		f := callFlow(t, tool, sessA, args(t, "action", "wait", "flow_id", id,
			"wait_condition", map[string]any{"kind": "timer", "at": at.Format(time.RFC3339)}))
		w, _ := f["wait"].(map[string]any)
		if f["status"] != "waiting" || num(t, f["revision"]) != 2 || w["kind"] != "timer" {
			t.Fatalf("timer wait: %v", f)
		}
		if got, err := time.Parse(time.RFC3339, w["at"].(string)); err != nil || !got.Equal(at) {
			t.Fatalf("timer at = %v, want %v", w["at"], at)
		}

		id = startFlow(t, tool, sessA, "event")
		f = callFlow(t, tool, sessA, args(t, "action", "wait", "flow_id", id,
			"wait_condition", map[string]any{"kind": "external_event", "topic": "email.reply", "correlation_id": "msg-1"}))
		if !reflect.DeepEqual(f["wait"], map[string]any{"kind": "external_event", "topic": "email.reply", "correlation_id": "msg-1"}) {
			t.Fatalf("event wait: %v", f)
		}

		id = startFlow(t, tool, sessA, "manual")
		f = callFlow(t, tool, sessA, args(t, "action", "wait", "flow_id", id, "wait_condition", map[string]any{"kind": "manual"}))
		if !reflect.DeepEqual(f["wait"], map[string]any{"kind": "manual"}) {
			t.Fatalf("manual wait: %v", f)
		}
		// Waiting twice is refused with a hint.
		err := callErr(t, tool, sessA, args(t, "action", "wait", "flow_id", id, "wait_condition", map[string]any{"kind": "manual"}), taskflow.ErrIllegalTransition)
		wantText(t, err, "cannot wait", "already waiting")

		// Exactly the horizon is allowed.
		id = startFlow(t, tool, sessA, "far")
		callFlow(t, tool, sessA, args(t, "action", "wait", "flow_id", id,
			"wait_condition", map[string]any{"kind": "timer", "at": now.Add(DefaultTimerMaxHorizon).Format(time.RFC3339Nano)}))
	})
}

func TestWaitGuardrails(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		id := startFlow(t, tool, sessA, "guarded")
		now := e.clock.Now()
		ts := func(d time.Duration) string { return now.Add(d).UTC().Format(time.RFC3339Nano) }
		before := e.dump()
		for _, c := range []struct {
			name, cond string
			text       []string
		}{
			{"past timer", `{"kind":"timer","at":"` + ts(-time.Second) + `"}`, []string{"not in the future"}},
			{"timer now", `{"kind":"timer","at":"` + ts(0) + `"}`, []string{"not in the future"}},
			{"beyond horizon", `{"kind":"timer","at":"` + ts(DefaultTimerMaxHorizon+time.Millisecond) + `"}`, []string{"too far ahead", "30 days"}},
			{"timer without at", `{"kind":"timer"}`, []string{`"at"`}},
			{"unparsable at", `{"kind":"timer","at":"tomorrow"}`, []string{"RFC 3339"}},
			{"at not a string", `{"kind":"timer","at":12}`, []string{`"at" must be a string`}},
			{"empty topic", `{"kind":"external_event","topic":"","correlation_id":"c"}`, []string{`non-empty "topic"`}},
			{"blank topic", `{"kind":"external_event","topic":"  ","correlation_id":"c"}`, []string{`non-empty "topic"`}},
			{"missing topic", `{"kind":"external_event","correlation_id":"c"}`, []string{`non-empty "topic"`}},
			{"empty correlation id", `{"kind":"external_event","topic":"t","correlation_id":""}`, []string{`non-empty "correlation_id"`}},
			{"missing correlation id", `{"kind":"external_event","topic":"t"}`, []string{`non-empty "correlation_id"`}},
			{"unknown kind", `{"kind":"sleep"}`, []string{"unknown wait kind", "timer", "external_event", "manual"}},
			{"missing kind", `{"at":"` + ts(time.Hour) + `"}`, []string{`needs a "kind"`}},
			{"kind not a string", `{"kind":3}`, []string{`"kind" must be a string`}},
			{"not an object", `"manual"`, []string{"must be a JSON object", "not a string"}},
			{"array", `[]`, []string{"must be a JSON object"}},
			{"null", `null`, []string{`needs "wait_condition"`}},
		} {
			err := callErr(t, tool, sessA, `{"action":"wait","flow_id":"`+id+`","wait_condition":`+c.cond+`}`, ErrArgs)
			wantText(t, err, c.text...)
		}
		err := callErr(t, tool, sessA, `{"action":"wait","flow_id":"`+id+`"}`, ErrArgs)
		wantText(t, err, `needs "wait_condition"`)
		e.sameDump(t, before, "refused waits")

		// The tool follows the store's clock: after an hour, a timer half an
		// hour after the old now is in the past.
		e.clock.Advance(time.Hour)
		callErr(t, tool, sessA, `{"action":"wait","flow_id":"`+id+`","wait_condition":{"kind":"timer","at":"`+ts(30*time.Minute)+`"}}`, ErrArgs)
		callFlow(t, tool, sessA, `{"action":"wait","flow_id":"`+id+`","wait_condition":{"kind":"timer","at":"`+ts(90*time.Minute)+`"}}`)
	})
}

func TestWaitOptions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		now := e.clock.Now()
		tool := New(e.m, WithTimerMaxHorizon(time.Hour))
		id := startFlow(t, tool, sessA, "short horizon")
		err := callErr(t, tool, sessA, args(t, "action", "wait", "flow_id", id,
			"wait_condition", map[string]any{"kind": "timer", "at": now.Add(61 * time.Minute).Format(time.RFC3339)}), ErrArgs)
		wantText(t, err, "1h0m0s")
		callFlow(t, tool, sessA, args(t, "action", "wait", "flow_id", id,
			"wait_condition", map[string]any{"kind": "timer", "at": now.Add(59 * time.Minute).Format(time.RFC3339)}))

		// Non-positive horizons keep the default; a nil clock keeps the store's.
		tool = New(e.m, WithTimerMaxHorizon(0), WithTimerMaxHorizon(-time.Hour), WithClock(nil), nil)
		if tool.cfg.maxHorizon != DefaultTimerMaxHorizon || !tool.cfg.now().Equal(now) {
			t.Fatalf("defaults: %v %v", tool.cfg.maxHorizon, tool.cfg.now())
		}
		id = startFlow(t, tool, sessA, "default horizon")
		callFlow(t, tool, sessA, args(t, "action", "wait", "flow_id", id,
			"wait_condition", map[string]any{"kind": "timer", "at": now.Add(29 * 24 * time.Hour).Format(time.RFC3339)}))

		// A tool clock of its own.
		later := now.Add(48 * time.Hour)
		tool = New(e.m, WithClock(func() time.Time { return later }))
		id = startFlow(t, tool, sessA, "own clock")
		callErr(t, tool, sessA, args(t, "action", "wait", "flow_id", id,
			"wait_condition", map[string]any{"kind": "timer", "at": now.Add(24 * time.Hour).Format(time.RFC3339)}), ErrArgs)
		callFlow(t, tool, sessA, args(t, "action", "wait", "flow_id", id,
			"wait_condition", map[string]any{"kind": "timer", "at": later.Add(time.Minute).Format(time.RFC3339)}))
	})
}

func TestFinish(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		id := startFlow(t, tool, sessA, "finish me")
		f := callFlow(t, tool, sessA, `{"action":"finish","flow_id":"`+id+`","final_state":{"summary":"done"}}`)
		if f["status"] != "finished" || num(t, f["revision"]) != 2 || f["state"].(map[string]any)["summary"] != "done" {
			t.Fatalf("finished: %v", f)
		}
		before := e.dump()
		err := callErr(t, tool, sessA, `{"action":"finish","flow_id":"`+id+`"}`, taskflow.ErrAlreadyTerminal)
		wantText(t, err, "cannot finish", "already finished")
		for _, a := range []string{
			`{"action":"advance","flow_id":"` + id + `","patch":{"x":1}}`,
			`{"action":"fail","flow_id":"` + id + `","reason":"r"}`,
			`{"action":"cancel","flow_id":"` + id + `"}`,
			`{"action":"wait","flow_id":"` + id + `","wait_condition":{"kind":"manual"}}`,
		} {
			callErr(t, tool, sessA, a, taskflow.ErrAlreadyTerminal)
		}
		e.sameDump(t, before, "moves of a finished flow")

		// No final state; a non-object final state is refused.
		id = startFlow(t, tool, sessA, "plain")
		callErr(t, tool, sessA, `{"action":"finish","flow_id":"`+id+`","final_state":"done"}`, ErrArgs)
		f = callFlow(t, tool, sessA, `{"action":"finish","flow_id":"`+id+`"}`)
		if f["status"] != "finished" || !reflect.DeepEqual(f["state"], map[string]any{}) {
			t.Fatalf("finished without final state: %v", f)
		}

		// A waiting flow cannot finish: the error says what to do.
		id = startFlow(t, tool, sessA, "waiting")
		callFlow(t, tool, sessA, `{"action":"wait","flow_id":"`+id+`","wait_condition":{"kind":"manual"}}`)
		before = e.dump()
		err = callErr(t, tool, sessA, `{"action":"finish","flow_id":"`+id+`"}`, taskflow.ErrIllegalTransition)
		wantText(t, err, "cannot finish", "is waiting", "fail or cancel")
		e.sameDump(t, before, "finish of a waiting flow")
	})
}

func TestFail(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		id := startFlow(t, tool, sessA, "fail me")
		before := e.dump()
		for _, a := range []string{
			`{"action":"fail","flow_id":"` + id + `"}`,
			`{"action":"fail","flow_id":"` + id + `","reason":""}`,
			`{"action":"fail","flow_id":"` + id + `","reason":" \n "}`,
		} {
			err := callErr(t, tool, sessA, a, ErrArgs)
			wantText(t, err, `"reason"`)
		}
		e.sameDump(t, before, "fail without a reason")

		f := callFlow(t, tool, sessA, `{"action":"fail","flow_id":"`+id+`","reason":" upstream is down "}`)
		failure := f["state"].(map[string]any)["failure"].(map[string]any)
		if f["status"] != "failed" || failure["reason"] != "upstream is down" || num(t, f["revision"]) != 2 {
			t.Fatalf("failed: %v", f)
		}
		callErr(t, tool, sessA, `{"action":"fail","flow_id":"`+id+`","reason":"again"}`, taskflow.ErrAlreadyTerminal)

		// A waiting flow can fail.
		id = startFlow(t, tool, sessA, "waiting")
		callFlow(t, tool, sessA, `{"action":"wait","flow_id":"`+id+`","wait_condition":{"kind":"manual"}}`)
		f = callFlow(t, tool, sessA, `{"action":"fail","flow_id":"`+id+`","reason":"gave up"}`)
		if f["status"] != "failed" || f["wait"] != nil {
			t.Fatalf("failed from waiting: %v", f)
		}
	})
}

func TestCancel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		id := startFlow(t, tool, sessA, "cancel me")
		callFlow(t, tool, sessA, `{"action":"wait","flow_id":"`+id+`","wait_condition":{"kind":"external_event","topic":"t","correlation_id":"c"}}`)
		f := callFlow(t, tool, sessA, `{"action":"cancel","flow_id":"`+id+`"}`)
		if f["status"] != "cancelled" || f["wait"] != nil || num(t, f["revision"]) != 3 {
			t.Fatalf("cancelled: %v", f)
		}
		err := callErr(t, tool, sessA, `{"action":"cancel","flow_id":"`+id+`"}`, taskflow.ErrAlreadyTerminal)
		wantText(t, err, "cannot cancel", "already cancelled")

		// A cancel requested elsewhere (an operator) leaves only cancel.
		id = startFlow(t, tool, sessA, "pending")
		must(t, try(e.m.RequestCancel(e.ctx, uuid.MustParse(id))))
		before := e.dump()
		for _, a := range []string{
			`{"action":"advance","flow_id":"` + id + `","patch":{"x":1}}`,
			`{"action":"wait","flow_id":"` + id + `","wait_condition":{"kind":"manual"}}`,
			`{"action":"finish","flow_id":"` + id + `"}`,
			`{"action":"fail","flow_id":"` + id + `","reason":"r"}`,
		} {
			err := callErr(t, tool, sessA, a, taskflow.ErrCancelPending)
			wantText(t, err, "cancel was requested", "only action it accepts now is cancel")
		}
		e.sameDump(t, before, "moves of a cancel-pending flow")
		f = callFlow(t, tool, sessA, `{"action":"status","flow_id":"`+id+`"}`)
		if f["cancel_requested"] != true {
			t.Fatalf("status of a cancel-pending flow: %v", f)
		}
		f = callFlow(t, tool, sessA, `{"action":"cancel","flow_id":"`+id+`"}`)
		if f["status"] != "cancelled" {
			t.Fatalf("cancel of a cancel-pending flow: %v", f)
		}
	})
}

func TestListMine(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		a1 := startFlow(t, tool, sessA, "a1")
		e.clock.Advance(time.Millisecond)
		a2 := startFlow(t, tool, sessA, "a2")
		e.clock.Advance(time.Millisecond)
		b1 := startFlow(t, tool, sessB, "b1")
		c1 := startFlow(t, tool, sessC, "c1")
		// A flow created outside the tool with an owner key that a naive
		// prefix match would confuse with session A's.
		must(t, try(e.m.CreateManaged(e.ctx, taskflow.CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: sessA.OwnerKey() + "0"})))

		ids := func(s Session) []string {
			res := callOK(t, tool, s, `{"action":"list_mine"}`)
			flows := res["flows"].([]any)
			if num(t, res["count"]) != int64(len(flows)) || len(res) != 5 || res["truncated"] != false || num(t, res["total"]) != int64(len(flows)) {
				t.Fatalf("list result: %v", res)
			}
			out := []string{}
			for _, f := range flows {
				checkFlowKeys(t, f.(map[string]any))
				out = append(out, f.(map[string]any)["id"].(string))
			}
			return out
		}
		if got := ids(sessA); !reflect.DeepEqual(got, []string{a2, a1}) {
			t.Fatalf("session A lists %v, want %v", got, []string{a2, a1})
		}
		if got := ids(sessB); !reflect.DeepEqual(got, []string{b1}) {
			t.Fatalf("session B lists %v", got)
		}
		if got := ids(sessC); !reflect.DeepEqual(got, []string{c1}) {
			t.Fatalf("session C lists %v", got)
		}
		raw, err := callRaw(t, tool, Session{AgentID: "nobody", SessionID: "x"}, `{"action":"list_mine"}`)
		if err != nil || string(raw) != `{"ok":true,"count":0,"total":0,"truncated":false,"flows":[]}` {
			t.Fatalf("empty list = %s, %v", raw, err)
		}
	})
}

func TestNotFound(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		startFlow(t, tool, sessA, "exists")
		missing := uuid.NewString()
		before := e.dump()
		for _, a := range []string{
			`{"action":"status","flow_id":"` + missing + `"}`,
			`{"action":"advance","flow_id":"` + missing + `","patch":{"x":1}}`,
			`{"action":"wait","flow_id":"` + missing + `","wait_condition":{"kind":"manual"}}`,
			`{"action":"finish","flow_id":" ` + missing + ` "}`,
			`{"action":"fail","flow_id":"` + missing + `","reason":"r"}`,
			`{"action":"cancel","flow_id":"` + missing + `"}`,
		} {
			raw, err := callRaw(t, tool, sessA, a)
			if err != nil {
				t.Fatalf("Call(%s): %v", a, err)
			}
			if want := `{"ok":false,"error":"not_found","flow_id":"` + missing + `"}`; string(raw) != want {
				t.Fatalf("Call(%s) = %s, want %s", a, raw, want)
			}
		}
		e.sameDump(t, before, "calls on a missing flow")
	})
}

// TestCrossSession: every action that names a flow refuses a flow of
// another session, says so, leaks none of its data, and changes nothing.
func TestCrossSession(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		const goal = "secret-goal-7f3a"
		const ctrl = "kate/secret-controller-91bc"
		for _, status := range []string{"running", "waiting"} {
			f := callFlow(t, tool, sessA, args(t, "action", "start", "controller_id", ctrl, "goal", goal,
				"current_step", "secret-step-55d0", "state", map[string]any{"token": "secret-state-c0de"}))
			id := f["id"].(string)
			if status == "waiting" {
				callFlow(t, tool, sessA, args(t, "action", "wait", "flow_id", id,
					"wait_condition", map[string]any{"kind": "external_event", "topic": "secret-topic-aa11", "correlation_id": "secret-corr-bb22"}))
			}
			calls := map[string]string{
				"status":        args(t, "action", "status", "flow_id", id),
				"advance":       args(t, "action", "advance", "flow_id", id, "patch", map[string]any{"token": "stolen"}, "current_step", "x"),
				"wait":          args(t, "action", "wait", "flow_id", id, "wait_condition", map[string]any{"kind": "manual"}),
				"finish":        args(t, "action", "finish", "flow_id", id, "final_state", map[string]any{"token": "stolen"}),
				"fail":          args(t, "action", "fail", "flow_id", id, "reason", "hijack"),
				"cancel":        args(t, "action", "cancel", "flow_id", id),
				"spawn":         "", // in the other session's own namespace, below
				"wait_children": args(t, "action", "wait_children", "flow_id", id),
				"list_children": args(t, "action", "list_children", "flow_id", id),
				"explain":       args(t, "action", "explain", "flow_id", id),
			}
			if len(calls) != len(Actions())-5 { // all but start, list_mine and the schedule actions (schedules_test.go)
				t.Fatalf("the test misses an action")
			}
			for _, other := range []Session{sessB, sessC, {AgentID: " kate ", SessionID: "s-10"}} {
				for action, a := range calls {
					if action == ActionSpawn { // a controller the other may name: only tenancy refuses it
						a = args(t, "action", "spawn", "flow_id", id, "children", []any{
							map[string]any{"key": "k", "controller_id": strings.TrimSpace(other.AgentID) + "/x", "goal": "g"}})
					}
					before := e.dump()
					err := callErr(t, tool, other, a, ErrForbidden)
					wantText(t, err, "belongs to a different session")
					for _, secret := range []string{"secret", status, "kate/", "agent:", "s-1"} {
						if strings.Contains(err.Error(), secret) {
							t.Fatalf("%s by %+v on a %s flow: error %q leaks %q", action, other, status, err, secret)
						}
					}
					if errors.Is(err, ErrArgs) {
						t.Fatalf("%s: forbidden error also wraps ErrArgs", action)
					}
					e.sameDump(t, before, action+" by another session")
				}
			}
			// The owner still sees it untouched.
			got := callFlow(t, tool, sessA, args(t, "action", "status", "flow_id", id))
			if got["status"] != status || got["goal"] != goal {
				t.Fatalf("owner's view after the attempts: %v", got)
			}
			// A session key that differs only by surrounding spaces is the
			// same session.
			callFlow(t, tool, Session{AgentID: " kate", SessionID: "s-1 "}, args(t, "action", "status", "flow_id", id))
		}
	})
}

func TestArgumentErrors(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		id := startFlow(t, tool, sessA, "args")
		before := e.dump()

		// Invalid flow ids, for every action that takes one.
		for _, action := range []string{"status", "advance", "wait", "finish", "fail", "cancel"} {
			// The action's other arguments, valid, so only the id is wrong.
			extra := map[string][]any{"advance": {"patch", map[string]any{"a": 1}}, "fail": {"reason", "r"},
				"wait": {"wait_condition", map[string]any{"kind": "manual"}}}[action]
			for _, bad := range []string{"nope", "1234", uuid.NewString() + "0", "{" + id, "urn:uuid:" + id + "}", "uuid:" + id, "(" + id + ")"} {
				err := callErr(t, tool, sessA, args(t, append([]any{"action", action, "flow_id", bad}, extra...)...), ErrArgs)
				wantText(t, err, "flow_id must be a UUID")
			}
			err := callErr(t, tool, sessA, args(t, "action", action), ErrArgs)
			wantText(t, err, `needs "flow_id"`)
			callErr(t, tool, sessA, `{"action":"`+action+`","flow_id":42}`, ErrArgs)
		}

		// Unknown or missing action: the error names every valid one.
		for _, a := range []string{`{"action":"delete","flow_id":"` + id + `"}`, `{"action":"START"}`, `{}`, `{"action":""}`, `{"action":null}`} {
			err := callErr(t, tool, sessA, a, ErrArgs)
			wantText(t, err, Actions()...)
		}
		err := callErr(t, tool, sessA, `{"action":"resume"}`, ErrArgs)
		wantText(t, err, `unknown action "resume"`)

		// Malformed arguments.
		for _, a := range []string{``, ` `, `null`, `[]`, `"start"`, `42`, `{"action":"start"`, `{"action":"start",}`, `{action:"start"}`,
			`{"action":["start"]}`, `{"action":"start","controller_id":{"a":1},"goal":"g"}`, "{\"action\":\"status\"}garbage"} {
			callErr(t, tool, sessA, a, ErrArgs)
		}

		// Missing or unusable session.
		for _, s := range []Session{{}, {AgentID: "kate"}, {SessionID: "s-1"}, {AgentID: " ", SessionID: "s-1"}, {AgentID: "kate", SessionID: "\t"}} {
			err := callErr(t, tool, s, `{"action":"list_mine"}`, ErrArgs)
			wantText(t, err, "session")
			callErr(t, tool, s, `{"action":"status","flow_id":"`+id+`"}`, ErrArgs)
		}
		err = callErr(t, tool, Session{AgentID: "kate:session:s", SessionID: "1"}, `{"action":"list_mine"}`, ErrArgs)
		wantText(t, err, "':'")
		// A session id may hold colons.
		callOK(t, tool, Session{AgentID: "kate", SessionID: "telegram:42"}, `{"action":"list_mine"}`)

		e.sameDump(t, before, "refused calls")

		// No panic on a zero tool, a tool without a manager, a nil context.
		for _, tl := range []*Tool{nil, {}, New(nil)} {
			if _, err := tl.Call(e.ctx, sessA, json.RawMessage(`{"action":"list_mine"}`)); err == nil {
				t.Fatal("a tool without a manager answered")
			}
		}
		var nilCtx context.Context
		if _, err := tool.Call(nilCtx, sessA, json.RawMessage(`{"action":"status","flow_id":"`+id+`"}`)); err != nil {
			t.Fatalf("nil context: %v", err)
		}
	})
}

func TestSessionOwnerKey(t *testing.T) {
	if got := (Session{AgentID: "kate", SessionID: "abc"}).OwnerKey(); got != "agent:kate:session:abc" {
		t.Fatalf("OwnerKey = %q", got)
	}
	if got := (Session{AgentID: " kate ", SessionID: " abc\n"}).OwnerKey(); got != "agent:kate:session:abc" {
		t.Fatalf("OwnerKey trims: %q", got)
	}
}

func TestDefinitionGolden(t *testing.T) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(New(nil).Definition()); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()
	path := filepath.Join("testdata", "tool_schema.golden.json")
	if *updateToolGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestDefinitionGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Definition() differs from %s (run with -update if the change is intended):\n%s", path, got)
	}
}

func TestDefinitionSchema(t *testing.T) {
	def := New(nil).Definition()
	if def.Name != "taskflow" || len(def.Description) < 200 {
		t.Fatalf("name %q, description %q", def.Name, def.Description)
	}
	for _, a := range Actions() {
		if !strings.Contains(def.Description, a) {
			t.Fatalf("the description does not mention %s", a)
		}
	}
	if !json.Valid(def.Parameters) {
		t.Fatalf("parameters are not valid JSON: %s", def.Parameters)
	}
	var schema struct {
		Type       string                     `json:"type"`
		Properties map[string]json.RawMessage `json:"properties"`
		Required   []string                   `json:"required"`
	}
	if err := json.Unmarshal(def.Parameters, &schema); err != nil {
		t.Fatal(err)
	}
	if schema.Type != "object" || !reflect.DeepEqual(schema.Required, []string{"action"}) {
		t.Fatalf("schema type %q, required %v", schema.Type, schema.Required)
	}
	var top map[string]json.RawMessage
	_ = json.Unmarshal(def.Parameters, &top)
	for k := range top {
		if k != "type" && k != "properties" && k != "required" && k != "additionalProperties" {
			t.Fatalf("unexpected top-level schema keyword %q", k)
		}
	}
	if bytes.Contains(def.Parameters, []byte(`"$ref"`)) || bytes.Contains(def.Parameters, []byte(`"oneOf"`)) ||
		bytes.Contains(def.Parameters, []byte(`"anyOf"`)) || bytes.Contains(def.Parameters, []byte(`"allOf"`)) {
		t.Fatal("the schema uses $ref or a combinator")
	}
	props := make([]string, 0, len(schema.Properties))
	for k := range schema.Properties {
		props = append(props, k)
	}
	sort.Strings(props)
	wantProps := []string{"action", "attribute", "attributes", "children", "controller_id", "cron", "current_step", "cursor", "deadline",
		"every_seconds", "fail_fast", "final_state", "flow_id", "goal", "idempotency_key", "limit", "name", "need", "patch", "reason",
		"state", "status", "time_zone", "timeout_seconds", "wait_condition"}
	if !reflect.DeepEqual(props, wantProps) {
		t.Fatalf("properties %v, want %v", props, wantProps)
	}
	var action struct {
		Type string   `json:"type"`
		Enum []string `json:"enum"`
	}
	_ = json.Unmarshal(schema.Properties["action"], &action)
	if action.Type != "string" || !reflect.DeepEqual(action.Enum, Actions()) {
		t.Fatalf("action: %+v", action)
	}
	var wait struct {
		Type       string `json:"type"`
		Properties map[string]struct {
			Type string   `json:"type"`
			Enum []string `json:"enum"`
		} `json:"properties"`
	}
	_ = json.Unmarshal(schema.Properties["wait_condition"], &wait)
	if wait.Type != "object" || len(wait.Properties) != 4 ||
		!reflect.DeepEqual(wait.Properties["kind"].Enum, []string{"timer", "external_event", "manual"}) {
		t.Fatalf("wait_condition: %+v", wait)
	}
	for _, k := range []string{"at", "topic", "correlation_id"} {
		if wait.Properties[k].Type != "string" {
			t.Fatalf("wait_condition.%s: %+v", k, wait.Properties[k])
		}
	}
	for k, v := range schema.Properties {
		var p struct {
			Type        string `json:"type"`
			Description string `json:"description"`
		}
		_ = json.Unmarshal(v, &p)
		if p.Type == "" || p.Description == "" {
			t.Fatalf("property %s lacks a type or description", k)
		}
	}
	// Each call returns its own copy.
	def.Parameters[0] = 'x'
	if !json.Valid(New(nil).Definition().Parameters) {
		t.Fatal("Definition shares its parameters")
	}
}

// An argument the action does not take is refused and changes nothing:
// a misspelt "next_step" used to come back ok with the step unchanged.
// The strict and Gemini forms (nulls for the other actions' arguments,
// *_json strings) and a copied "revision" are still accepted.
func TestRefusesUnknownArguments(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		id := startFlow(t, tool, sessA, "spell")
		before := e.dump()
		for _, c := range []struct {
			args string
			want []string
		}{
			{`{"action":"advance","flow_id":"` + id + `","next_step":"two"}`, []string{`advance does not take an argument "next_step"`, "flow_id, patch, current_step"}},
			{`{"action":"advance","flow_id":"` + id + `","patch":{"a":1},"nextStep":"two","foo":1}`, []string{`arguments "foo", "nextStep"`}},
			{`{"action":"finish","flow_id":"` + id + `","patch":{"a":1}}`, []string{`finish does not take an argument "patch"`, "final_state"}},
			{`{"action":"status","flow_id":"` + id + `","reason":"x"}`, []string{`status does not take an argument "reason"`}},
			{`{"action":"list_mine","goal":"g"}`, []string{`list_mine does not take an argument "goal"`, "only status, controller_id, attribute, cursor, limit"}},
			{`{"action":"start","controller_id":"kate/c","goal":"g","status":"running"}`, []string{`"status"`}},
			{`{"action":"wait","flow_id":"` + id + `","wait_condition":{"kind":"manual","at":"2030-01-01T00:00:00Z"}}`, []string{`a manual wait_condition does not take "at"`}},
			{`{"action":"wait","flow_id":"` + id + `","wait_condition":{"kind":"external_event","topic":"t","correlation":"c"}}`, []string{`"correlation"`, "topic, correlation_id"}},
		} {
			wantText(t, callErr(t, tool, sessA, c.args, ErrArgs), c.want...)
		}
		// The per-action tools refuse the same way.
		_, err := tool.CallTool(e.ctx, sessA, "taskflow_advance", json.RawMessage(`{"flow_id":"`+id+`","next_step":"two"}`))
		if !errors.Is(err, ErrArgs) || !strings.Contains(err.Error(), `"next_step"`) {
			t.Fatalf("taskflow_advance with next_step: %v", err)
		}
		e.sameDump(t, before, "a refused argument")

		// Strict mode's nulls, a *_json string and a stale revision pass.
		f := callFlow(t, tool, sessA, `{"action":"advance","flow_id":"`+id+`","patch":null,"patch_json":"{\"a\":1}","current_step":"two",`+
			`"reason":null,"final_state_json":null,"wait_condition":null,"goal":null,"revision":7}`)
		if f["current_step"] != "two" || num(t, f["revision"]) != 2 {
			t.Fatalf("strict-form advance: %v", f)
		}
	})
}
