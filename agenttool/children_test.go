package agenttool

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

// spawnArgs builds a spawn call of flow id with children given as
// key, goal pairs in session s's namespace.
func spawnArgs(t *testing.T, s Session, id string, keyGoals ...string) string {
	t.Helper()
	var kids []any
	for i := 0; i+1 < len(keyGoals); i += 2 {
		kids = append(kids, map[string]any{"key": keyGoals[i], "controller_id": strings.TrimSpace(s.AgentID) + "/child", "goal": keyGoals[i+1]})
	}
	return args(t, "action", "spawn", "flow_id", id, "children", kids)
}

// spawned runs a spawn that must succeed and returns its children's ids
// by key.
func spawned(t *testing.T, tool *Tool, s Session, call string) map[string]string {
	t.Helper()
	res := callOK(t, tool, s, call)
	flows := res["flows"].([]any)
	if num(t, res["count"]) != int64(len(flows)) || len(res) != 3 {
		t.Fatalf("spawn result: %v", res)
	}
	ids := map[string]string{}
	for _, x := range flows {
		f := x.(map[string]any)
		checkFlowKeys(t, f)
		ids[f["child_key"].(string)] = f["id"].(string)
	}
	return ids
}

func TestSpawn(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		parent := startFlow(t, tool, sessA, "write the book")
		call := args(t, "action", "spawn", "flow_id", parent, "children", []any{
			map[string]any{"key": "ch-1", "controller_id": "kate/child", "goal": "write chapter 1", "current_step": "outline",
				"state": map[string]any{"n": 1}, "on_parent_close": "abandon"},
			map[string]any{"key": " ch-2 ", "controller_id": " kate/child ", "goal": "write chapter 2"},
		})
		res := callOK(t, tool, sessA, call)
		flows := res["flows"].([]any)
		if num(t, res["count"]) != 2 || len(flows) != 2 {
			t.Fatalf("spawn: %v", res)
		}
		// In the order given, each a running flow of the session.
		for i, want := range []struct{ key, goal, step, state string }{
			{"ch-1", "write chapter 1", "outline", "map[n:1]"},
			{"ch-2", "write chapter 2", "init", "map[]"},
		} {
			f := flows[i].(map[string]any)
			checkFlowKeys(t, f)
			if f["child_key"] != want.key || f["parent_id"] != parent || f["goal"] != want.goal || f["current_step"] != want.step ||
				fmt.Sprint(f["state"]) != want.state || f["status"] != "running" || f["controller_id"] != "kate/child" {
				t.Fatalf("child %d: %v", i, f)
			}
			stored := must(t, try(e.m.Get(e.ctx, uuid.MustParse(f["id"].(string)))))
			if stored.OwnerSessionKey != sessA.OwnerKey() || stored.RequesterOrigin != "s-1" || stored.ParentID.String() != parent || stored.ChildKey != want.key {
				t.Fatalf("stored child %d: %+v", i, stored)
			}
		}
		// The parent counts them; the children are the session's flows.
		if p := callFlow(t, tool, sessA, args(t, "action", "status", "flow_id", parent)); num(t, p["children"]) != 2 {
			t.Fatalf("parent after spawn: %v", p)
		}
		if res := callOK(t, tool, sessA, `{"action":"list_mine"}`); num(t, res["count"]) != 3 {
			t.Fatalf("list_mine: %v", res)
		}

		// Spawning again is idempotent per key; a new key adds a child.
		again := spawned(t, tool, sessA, call)
		first := map[string]string{"ch-1": flows[0].(map[string]any)["id"].(string), "ch-2": flows[1].(map[string]any)["id"].(string)}
		if !reflect.DeepEqual(again, first) {
			t.Fatalf("repeated spawn: %v, want %v", again, first)
		}
		more := spawned(t, tool, sessA, spawnArgs(t, sessA, parent, "ch-2", "write chapter 2", "ch-3", "write chapter 3"))
		if more["ch-2"] != first["ch-2"] || more["ch-3"] == "" {
			t.Fatalf("spawn with a new key: %v", more)
		}
		if p := must(t, try(e.m.Get(e.ctx, uuid.MustParse(parent)))); p.Children != 3 {
			t.Fatalf("parent holds %d children, want 3", p.Children)
		}

		// A key with other arguments is refused with a hint; nothing changes.
		before := e.dump()
		err := callErr(t, tool, sessA, spawnArgs(t, sessA, parent, "ch-1", "something else"), ErrArgs)
		if !errors.Is(err, taskflow.ErrIdempotencyConflict) {
			t.Fatalf("conflict: %v", err)
		}
		wantText(t, err, "new key", "list_children")
		e.sameDump(t, before, "a conflicting spawn")

		// An ended parent spawns nothing.
		callFlow(t, tool, sessA, args(t, "action", "cancel", "flow_id", parent))
		err = callErr(t, tool, sessA, spawnArgs(t, sessA, parent, "ch-9", "late"), taskflow.ErrAlreadyTerminal)
		wantText(t, err, "cannot spawn", "already cancelled")
		// The cancel closed the children by their policy: ch-1 is abandoned
		// and runs on, the others are cancelled.
		for id, want := range map[string]taskflow.FlowStatus{first["ch-1"]: taskflow.StatusRunning, first["ch-2"]: taskflow.StatusCancelled, more["ch-3"]: taskflow.StatusCancelled} {
			if f := must(t, try(e.m.Get(e.ctx, uuid.MustParse(id)))); f.Status != want {
				t.Fatalf("child %s (%s) after the parent's cancel: %s, want %s", id, f.ChildKey, f.Status, want)
			}
		}

		// An unknown parent is not_found.
		missing := uuid.NewString()
		raw, err := callRaw(t, tool, sessA, spawnArgs(t, sessA, missing, "k", "g"))
		if err != nil || string(raw) != `{"ok":false,"error":"not_found","flow_id":"`+missing+`"}` {
			t.Fatalf("spawn under a missing flow: %s %v", raw, err)
		}
		mustVerify(t, e)
	})
}

// TestSpawnTenancy: a session spawns only under its own flows; its
// children are its own whatever the model sends, and in its own
// controller namespace.
func TestSpawnTenancy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		parent := startFlow(t, tool, sessA, "secret-goal-1d2e")
		before := e.dump()
		for _, other := range []Session{sessB, sessC} {
			err := callErr(t, tool, other, spawnArgs(t, other, parent, "k", "hijack"), ErrForbidden)
			wantText(t, err, "belongs to a different session")
			if strings.Contains(err.Error(), "secret") || errors.Is(err, ErrArgs) {
				t.Fatalf("refusal %q", err)
			}
			// list_children and wait_children too.
			callErr(t, tool, other, args(t, "action", "list_children", "flow_id", parent), ErrForbidden)
			callErr(t, tool, other, args(t, "action", "wait_children", "flow_id", parent), ErrForbidden)
		}
		e.sameDump(t, before, "spawns under another session's flow")

		// A child cannot be given another owner, origin, parent or id: a
		// child takes no such argument.
		for _, field := range []string{"owner_session_key", "owner", "requester_origin", "parent_id", "idempotency_key", "id"} {
			call := args(t, "action", "spawn", "flow_id", parent, "children", []any{
				map[string]any{"key": "k", "controller_id": "kate/c", "goal": "g", field: sessB.OwnerKey()}})
			err := callErr(t, tool, sessA, call, ErrArgs)
			wantText(t, err, `children[0] does not take "`+field+`"`, "belongs to this session")
		}
		// Nor a controller outside the agent's namespace.
		for _, ctl := range []string{"bob/worker", "kate", "katex/c"} {
			call := args(t, "action", "spawn", "flow_id", parent, "children", []any{
				map[string]any{"key": "ok", "controller_id": "kate/c", "goal": "g"},
				map[string]any{"key": "k", "controller_id": ctl, "goal": "g"}})
			wantText(t, callErr(t, tool, sessA, call, ErrArgs), "children[1]", `"kate/"`)
		}
		e.sameDump(t, before, "refused children")

		// The children of session A are A's: B cannot see or move them.
		kids := spawned(t, tool, sessA, spawnArgs(t, sessA, parent, "a", "ga"))
		for _, a := range []string{
			args(t, "action", "status", "flow_id", kids["a"]),
			args(t, "action", "finish", "flow_id", kids["a"]),
			spawnArgs(t, sessB, kids["a"], "grandchild", "g"),
		} {
			callErr(t, tool, sessB, a, ErrForbidden)
		}
		if f := must(t, try(e.m.Get(e.ctx, uuid.MustParse(kids["a"])))); f.OwnerSessionKey != sessA.OwnerKey() {
			t.Fatalf("child owner %q", f.OwnerSessionKey)
		}
		// A session's own child may have children of its own.
		grand := spawned(t, tool, sessA, spawnArgs(t, sessA, kids["a"], "g1", "grandchild"))
		if f := must(t, try(e.m.Get(e.ctx, uuid.MustParse(grand["g1"])))); f.ParentID.String() != kids["a"] || f.OwnerSessionKey != sessA.OwnerKey() {
			t.Fatalf("grandchild %+v", f)
		}

		// A child the host started under the session's flow for another
		// owner is never handed to the session by spawning its key.
		must(t, try(e.m.StartChild(e.ctx, uuid.MustParse(parent), taskflow.ChildInput{Key: "host", Flow: taskflow.CreateManagedInput{
			ControllerID: "kate/child", Goal: "g", OwnerSessionKey: sessB.OwnerKey(), RequesterOrigin: "s-1", CurrentStep: "init", State: map[string]any{}}})))
		raw, err := callRaw(t, tool, sessA, spawnArgs(t, sessA, parent, "host", "g"))
		if raw != nil || !(errors.Is(err, ErrForbidden) || errors.Is(err, taskflow.ErrIdempotencyConflict)) {
			t.Fatalf("spawning the key of another owner's child: %s, %v", raw, err)
		}

		// A host policy applies to children as to start.
		listed := New(e.m, WithAllowedControllers("shared/queue"))
		p2 := callFlow(t, listed, sessA, args(t, "action", "start", "controller_id", "shared/queue", "goal", "g"))["id"].(string)
		wantText(t, callErr(t, listed, sessA, spawnArgs(t, sessA, p2, "k", "g"), ErrArgs), `"shared/queue"`)
		callOK(t, listed, sessA, args(t, "action", "spawn", "flow_id", p2, "children", []any{
			map[string]any{"key": "k", "controller_id": "shared/queue", "goal": "g"}}))
		mustVerify(t, e)
	})
}

func TestSpawnValidation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		parent := startFlow(t, tool, sessA, "p")
		kid := func(kv ...any) map[string]any {
			m := map[string]any{"key": "k", "controller_id": "kate/c", "goal": "g"}
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i+1] == nil {
					delete(m, kv[i].(string))
				} else {
					m[kv[i].(string)] = kv[i+1]
				}
			}
			return m
		}
		many := make([]any, SpawnLimit+1)
		for i := range many {
			many[i] = kid("key", fmt.Sprint("k", i))
		}
		before := e.dump()
		for _, c := range []struct {
			children any
			text     string
		}{
			{nil, `spawn needs "children"`},
			{map[string]any{"key": "k"}, `"children" must be a JSON array`},
			{"k", `"children" must be a JSON array`},
			{[]any{}, `"children" is empty`},
			{many, "at most 100 a call"},
			{[]any{"k"}, "children[0] must be a JSON object"},
			{[]any{kid("key", nil)}, `children[0] needs "key"`},
			{[]any{kid("key", "  ")}, "key cannot be empty"},
			{[]any{kid("key", strings.Repeat("k", MaxIdempotencyKeyBytes+1))}, "at most 256"},
			{[]any{kid("controller_id", nil)}, `needs "controller_id"`},
			{[]any{kid("goal", " ")}, "goal cannot be empty"},
			{[]any{kid("goal", 5)}, `"goal" must be a string`},
			{[]any{kid(), kid("key", " k ")}, `children[0] and children[1] have the same key "k"`},
			{[]any{kid("on_parent_close", "orphan")}, "request_cancel"},
			{[]any{kid("state", []any{1})}, `"children[0].state" must be a JSON object, not an array`},
			{[]any{kid("state_json", "[1]")}, `"children[0].state_json" must hold a JSON object`},
			{[]any{kid("state_json", `{"a":1}`, "state", map[string]any{})}, "not both"},
			{[]any{kid("next_step", "x")}, `"next_step"`},
		} {
			call := args(t, "action", "spawn", "flow_id", parent)
			if c.children != nil {
				call = args(t, "action", "spawn", "flow_id", parent, "children", c.children)
			}
			wantText(t, callErr(t, tool, sessA, call, ErrArgs), c.text)
		}
		wantText(t, callErr(t, tool, sessA, args(t, "action", "spawn", "children", []any{kid()}), ErrArgs), `spawn needs "flow_id"`)
		wantText(t, callErr(t, tool, sessA, args(t, "action", "spawn", "flow_id", parent, "children", []any{kid()}, "goal", "g"), ErrArgs),
			`spawn does not take an argument "goal"`)
		e.sameDump(t, before, "refused spawns")

		// The strict and Gemini forms: nulls for the unused, state as a
		// JSON string, per-action tool.
		raw, err := tool.CallTool(e.ctx, sessA, "taskflow_spawn", json.RawMessage(`{"flow_id":"`+parent+`","children":[`+
			`{"key":"s","controller_id":"kate/c","goal":"g","current_step":null,"state_json":"{\"n\":7}","on_parent_close":null}]}`))
		if err != nil {
			t.Fatal(err)
		}
		f := decodeResult(t, raw)["flows"].([]any)[0].(map[string]any)
		if fmt.Sprint(f["state"]) != "map[n:7]" || f["current_step"] != "init" {
			t.Fatalf("strict-form child: %v", f)
		}
		stored := must(t, try(e.m.Get(e.ctx, uuid.MustParse(f["id"].(string)))))
		if stored.OwnerSessionKey != sessA.OwnerKey() {
			t.Fatalf("owner %q", stored.OwnerSessionKey)
		}
	})
}

func TestWaitChildren(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		ctx := e.ctx

		// All of them (the default): one finishes, one fails; the parent
		// resumes when both ended, with the summary in its state.
		parent := startFlow(t, tool, sessA, "all")
		kids := spawned(t, tool, sessA, spawnArgs(t, sessA, parent, "a", "ga", "b", "gb"))
		f := callFlow(t, tool, sessA, args(t, "action", "wait_children", "flow_id", parent))
		if f["status"] != "waiting" || !reflect.DeepEqual(f["wait"], map[string]any{"kind": "children"}) {
			t.Fatalf("wait_children: %v", f)
		}
		must(t, try(e.m.Finish(ctx, uuid.MustParse(kids["a"]), map[string]any{"words": 1200})))
		if st := callFlow(t, tool, sessA, args(t, "action", "status", "flow_id", parent)); st["status"] != "waiting" {
			t.Fatalf("resumed after one of two: %v", st)
		}
		callFlow(t, tool, sessA, args(t, "action", "fail", "flow_id", kids["b"], "reason", "no source"))
		f = callFlow(t, tool, sessA, args(t, "action", "status", "flow_id", parent))
		sum := summary(t, f)
		if f["status"] != "running" || num(t, sum["total"]) != 2 || num(t, sum["finished"]) != 1 || num(t, sum["failed"]) != 1 ||
			num(t, sum["pending"]) != 0 || sum["why"] != "settled" {
			t.Fatalf("resumed parent: %v", f)
		}
		results := sum["results"].([]any)
		if len(results) != 2 {
			t.Fatalf("results %v", results)
		}
		byKey := map[string]map[string]any{}
		for _, r := range results {
			byKey[r.(map[string]any)["key"].(string)] = r.(map[string]any)
		}
		if byKey["a"]["status"] != "finished" || fmt.Sprint(byKey["a"]["state"]) != "map[words:1200]" ||
			byKey["b"]["status"] != "failed" || byKey["b"]["error"] != "no source" {
			t.Fatalf("results %v", byKey)
		}

		// Any one (need 1), with fail_fast.
		parent = startFlow(t, tool, sessA, "any")
		kids = spawned(t, tool, sessA, spawnArgs(t, sessA, parent, "x", "gx", "y", "gy"))
		f = callFlow(t, tool, sessA, args(t, "action", "wait_children", "flow_id", parent, "need", 1, "fail_fast", true))
		if !reflect.DeepEqual(f["wait"], map[string]any{"kind": "children", "need": json.Number("1"), "fail_fast": true}) {
			t.Fatalf("wait: %v", f["wait"])
		}
		callFlow(t, tool, sessA, args(t, "action", "finish", "flow_id", kids["y"]))
		f = callFlow(t, tool, sessA, args(t, "action", "status", "flow_id", parent))
		if sum := summary(t, f); f["status"] != "running" || sum["why"] != "met" || num(t, sum["pending"]) != 1 {
			t.Fatalf("need 1: %v", f)
		}

		// A timeout: the engine's tick resumes the parent at its deadline.
		parent = startFlow(t, tool, sessA, "timeout")
		spawned(t, tool, sessA, spawnArgs(t, sessA, parent, "slow", "g"))
		f = callFlow(t, tool, sessA, args(t, "action", "wait_children", "flow_id", parent, "timeout_seconds", 60))
		at, err := time.Parse(time.RFC3339, f["wait"].(map[string]any)["at"].(string))
		if err != nil || !at.Equal(e.clock.Now().Add(time.Minute)) {
			t.Fatalf("deadline %v (%v), want %v", f["wait"], err, e.clock.Now().Add(time.Minute))
		}
		e.clock.Advance(61 * time.Second)
		e.engine().Tick(ctx)
		f = callFlow(t, tool, sessA, args(t, "action", "status", "flow_id", parent))
		if sum := summary(t, f); f["status"] != "running" || sum["why"] != "timeout" || num(t, sum["pending"]) != 1 {
			t.Fatalf("timeout: %v", f)
		}
		mustVerify(t, e)
		// A deadline as a time.
		dl := e.clock.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
		f = callFlow(t, tool, sessA, args(t, "action", "wait_children", "flow_id", parent, "deadline", dl.Format(time.RFC3339)))
		if got, _ := time.Parse(time.RFC3339, f["wait"].(map[string]any)["at"].(string)); !got.Equal(dl) {
			t.Fatalf("deadline %v, want %v", f["wait"], dl)
		}
		mustVerify(t, e)
		// Waiting twice is refused with a hint.
		err = callErr(t, tool, sessA, args(t, "action", "wait_children", "flow_id", parent), taskflow.ErrIllegalTransition)
		wantText(t, err, "cannot wait_children", "already waiting")
	})
}

// summary returns the "children" summary in a resumed parent's state.
func summary(t *testing.T, f map[string]any) map[string]any {
	t.Helper()
	st, _ := f["state"].(map[string]any)
	sum, ok := st["children"].(map[string]any)
	if !ok {
		t.Fatalf("no children summary in %v", f)
	}
	return sum
}

func TestWaitChildrenGuardrails(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		parent := startFlow(t, tool, sessA, "p")
		lonely := startFlow(t, tool, sessA, "no children")
		spawned(t, tool, sessA, spawnArgs(t, sessA, parent, "k", "g"))
		ts := func(d time.Duration) string { return e.clock.Now().Add(d).UTC().Format(time.RFC3339Nano) }
		before := e.dump()
		for _, c := range []struct {
			kv   []any
			text string
		}{
			{[]any{"need", -1}, `"need" is -1`},
			{[]any{"need", 1.5}, `"need" must be a whole number`},
			{[]any{"need", "2"}, `"need" must be a whole number`},
			{[]any{"fail_fast", "yes"}, `"fail_fast" must be a boolean`},
			{[]any{"deadline", ts(time.Hour), "timeout_seconds", 5}, "not both"},
			{[]any{"deadline", "tomorrow"}, "RFC 3339"},
			{[]any{"deadline", ts(-time.Second)}, "not in the future"},
			{[]any{"deadline", ts(DefaultTimerMaxHorizon + time.Second)}, "max horizon"},
			{[]any{"timeout_seconds", 0}, "positive"},
			{[]any{"timeout_seconds", int64(DefaultTimerMaxHorizon/time.Second) + 1}, "max horizon"},
			{[]any{"wait_condition", map[string]any{"kind": "manual"}}, `wait_children does not take an argument "wait_condition"`},
		} {
			call := args(t, append([]any{"action", "wait_children", "flow_id", parent}, c.kv...)...)
			wantText(t, callErr(t, tool, sessA, call, ErrArgs), c.text)
		}
		wantText(t, callErr(t, tool, sessA, args(t, "action", "wait_children", "flow_id", lonely), ErrArgs), "no children", "spawn")
		// The wait action leaves children to wait_children.
		wantText(t, callErr(t, tool, sessA, args(t, "action", "wait", "flow_id", parent, "wait_condition", map[string]any{"kind": "children"}), ErrArgs),
			"use the wait_children action")
		e.sameDump(t, before, "refused wait_children")
		// Exactly the horizon is allowed.
		callFlow(t, tool, sessA, args(t, "action", "wait_children", "flow_id", parent, "timeout_seconds", int64(DefaultTimerMaxHorizon/time.Second)))
	})
}

func TestListChildren(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		parent := startFlow(t, tool, sessA, "p")
		var kv []string
		for i := 0; i < 5; i++ {
			kv = append(kv, fmt.Sprint("k", i), fmt.Sprint("goal ", i))
		}
		kids := spawned(t, tool, sessA, spawnArgs(t, sessA, parent, kv...))
		must(t, try(e.m.Finish(e.ctx, uuid.MustParse(kids["k1"]), map[string]any{"done": true})))
		callFlow(t, tool, sessA, args(t, "action", "fail", "flow_id", kids["k3"], "reason", "broken"))

		before := e.dump()
		var keys []string
		cursor, pages := "", 0
		for {
			call := args(t, "action", "list_children", "flow_id", parent, "limit", 2)
			if cursor != "" {
				call = args(t, "action", "list_children", "flow_id", parent, "limit", 2, "cursor", cursor)
			}
			res := callOK(t, tool, sessA, call)
			page := res["children"].([]any)
			if num(t, res["count"]) != int64(len(page)) || len(page) > 2 || len(res) != 4 {
				t.Fatalf("page: %v", res)
			}
			for _, x := range page {
				c := x.(map[string]any)
				keys = append(keys, c["key"].(string))
				if c["id"] != kids[c["key"].(string)] {
					t.Fatalf("child %v, want id %s", c, kids[c["key"].(string)])
				}
				switch c["key"] {
				case "k1":
					if c["status"] != "finished" || c["ended"] != true || fmt.Sprint(c["state"]) != "map[done:true]" {
						t.Fatalf("finished child: %v", c)
					}
				case "k3":
					if c["status"] != "failed" || c["ended"] != true || c["error"] != "broken" {
						t.Fatalf("failed child: %v", c)
					}
				default:
					if c["status"] != "running" || c["ended"] != false || c["state"] != nil {
						t.Fatalf("running child: %v", c)
					}
				}
			}
			pages++
			cursor = res["next_cursor"].(string)
			if cursor == "" {
				break
			}
			if pages > 5 {
				t.Fatal("the pages do not end")
			}
		}
		if want := []string{"k0", "k1", "k2", "k3", "k4"}; !reflect.DeepEqual(keys, want) || pages != 3 {
			t.Fatalf("%d pages of %v, want 3 of %v", pages, keys, want)
		}
		// One page by default; a flow without children has none.
		if res := callOK(t, tool, sessA, args(t, "action", "list_children", "flow_id", parent)); num(t, res["count"]) != 5 || res["next_cursor"] != "" {
			t.Fatalf("default page: %v", res)
		}
		lonely := startFlow(t, tool, sessA, "lonely")
		before = e.dump()
		raw, err := callRaw(t, tool, sessA, args(t, "action", "list_children", "flow_id", lonely))
		if err != nil || string(raw) != `{"ok":true,"count":0,"children":[],"next_cursor":""}` {
			t.Fatalf("no children: %s %v", raw, err)
		}
		for _, c := range []struct {
			kv   []any
			text string
		}{
			{[]any{"limit", 0}, `"limit" is 0`},
			{[]any{"limit", ListLimit + 1}, "1 to 100"},
			{[]any{"cursor", "abc"}, "not a cursor"},
			{[]any{"cursor", "-1"}, "not a cursor"},
		} {
			wantText(t, callErr(t, tool, sessA, args(t, append([]any{"action", "list_children", "flow_id", parent}, c.kv...)...), ErrArgs), c.text)
		}
		missing := uuid.NewString()
		if raw, err := callRaw(t, tool, sessA, args(t, "action", "list_children", "flow_id", missing)); err != nil || !strings.Contains(string(raw), "not_found") {
			t.Fatalf("missing flow: %s %v", raw, err)
		}
		e.sameDump(t, before, "list_children")
	})
}
