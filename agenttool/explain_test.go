package agenttool

import (
	"encoding/json"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

// explained runs an explain of flow id by s that must succeed and
// returns its explanation, after checking the result's shape and that
// it names the flow. The raw result is returned too, to look for what
// must not be in it.
func explained(t *testing.T, tool *Tool, s Session, id string) (map[string]any, string) {
	t.Helper()
	call := args(t, "action", "explain", "flow_id", id)
	raw, err := callRaw(t, tool, s, call)
	if err != nil {
		t.Fatalf("Call(%s): %v", call, err)
	}
	res := decodeResult(t, raw)
	x, ok := res["explanation"].(map[string]any)
	if res["ok"] != true || len(res) != 2 || !ok {
		t.Fatalf("explain result %s", raw)
	}
	keys := make([]string, 0, len(x))
	for k := range x {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	want := []string{"code", "facts", "flow_id", "moves", "status", "stuck", "text"}
	if _, ok := x["facts"]; !ok { // left out when there are none
		want = slices.DeleteFunc(want, func(k string) bool { return k == "facts" })
	}
	if !reflect.DeepEqual(keys, want) || x["flow_id"] != id || x["text"] == "" || x["moves"] == "" {
		t.Fatalf("explanation %s", raw)
	}
	return x, string(raw)
}

// wantExplained checks an explanation's code, stuck and words.
func wantExplained(t *testing.T, x map[string]any, status, code string, stuck bool, text ...string) {
	t.Helper()
	if x["status"] != status || x["code"] != code || x["stuck"] != stuck {
		t.Fatalf("explanation %v, want status %s, code %s, stuck %v", x, status, code, stuck)
	}
	for _, w := range text {
		if !strings.Contains(x["text"].(string), w) {
			t.Fatalf("text %q does not say %q", x["text"], w)
		}
	}
}

// fact returns a fact of an explanation, failing when it is missing.
func fact(t *testing.T, x map[string]any, name string) any {
	t.Helper()
	facts, _ := x["facts"].(map[string]any)
	v, ok := facts[name]
	if !ok {
		t.Fatalf("no fact %s in %v", name, x)
	}
	return v
}

// The explain action through the tool: waiting flows of each kind, a
// leased one and an ended one, each with its code and words; topics as
// the model set them and no lease token; an unknown flow is not_found,
// another session's is refused, and explain takes no other argument.
func TestExplain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		defer func() { _ = e.m.Close() }()
		tool := New(e.m)

		// A timer due in 2 hours, with no engine ticking: said, not stuck
		// (it is not late); once an engine ticked, said so.
		timer := startFlow(t, tool, sessA, "remind me")
		callFlow(t, tool, sessA, args(t, "action", "wait", "flow_id", timer,
			"wait_condition", map[string]any{"kind": "timer", "at": e.clock.Now().Add(2 * time.Hour).Format(time.RFC3339Nano)}))
		x, _ := explained(t, tool, sessA, timer)
		wantExplained(t, x, "waiting", "waiting_timer", false, "waits on a timer due in 2h", "no engine has ticked")
		if n := num(t, fact(t, x, "due_in_s")); n != 7200 {
			t.Fatalf("due_in_s = %d", n)
		}
		e.engine().Tick(ctx)
		x, _ = explained(t, tool, sessA, timer)
		wantExplained(t, x, "waiting", "waiting_timer", false, "due in 2h", "an engine ticked 0s ago")

		// An event, with one sent to the flow under another topic of the
		// agent: the words and facts name the topics as the model set them.
		ev := startFlow(t, tool, sessA, "wait for the reply")
		callFlow(t, tool, sessA, args(t, "action", "wait", "flow_id", ev,
			"wait_condition", map[string]any{"kind": "external_event", "topic": "email.reply", "correlation_id": "msg-1"}))
		if f, err := e.m.TryResumeExternal(ctx, uuid.MustParse(ev), Topic("kate", "email.bounce"), "msg-1", map[string]any{"x": 1}); err != nil || f != nil {
			t.Fatalf("the bounce resumed the flow: %v %v", f, err)
		}
		x, raw := explained(t, tool, sessA, ev)
		wantExplained(t, x, "waiting", "waiting_event", false,
			`topic "email.reply" with correlation id "msg-1"`, `1 event(s) kept for it do not match`, `near miss: topic "email.bounce", correlation id "msg-1"`)
		if fact(t, x, "topic") != "email.reply" || fact(t, x, "correlation_id") != "msg-1" ||
			fact(t, x, "near_miss") != `topic "email.bounce", correlation id "msg-1"` || num(t, fact(t, x, "kept_unmatched")) != 1 {
			t.Fatalf("event facts %v", x["facts"])
		}
		if strings.Contains(raw, "agent:") {
			t.Fatalf("the explanation shows the agent's scope: %s", raw)
		}
		// The library's own explanation holds the stored topic.
		if lib := must(t, try(e.m.Explain(ctx, uuid.MustParse(ev)))); lib.Facts["topic"] != Topic("kate", "email.reply") {
			t.Fatalf("the library's explanation: %+v", lib)
		}

		// A manual wait waits for a person: not stuck.
		manual := startFlow(t, tool, sessA, "ask a human")
		callFlow(t, tool, sessA, args(t, "action", "wait", "flow_id", manual, "wait_condition", map[string]any{"kind": "manual"}))
		x, _ = explained(t, tool, sessA, manual)
		wantExplained(t, x, "waiting", "waiting_manual", false, "waits for a person")

		// Waiting on children: their progress.
		parent := startFlow(t, tool, sessA, "write the book")
		kids := spawned(t, tool, sessA, spawnArgs(t, sessA, parent, "ch-1", "chapter 1", "ch-2", "chapter 2"))
		must(t, try(e.m.Finish(ctx, uuid.MustParse(kids["ch-1"]), nil)))
		callFlow(t, tool, sessA, args(t, "action", "wait_children", "flow_id", parent))
		x, _ = explained(t, tool, sessA, parent)
		wantExplained(t, x, "waiting", "waiting_children", false, "1 of 2 finished (2 needed)", "1 still open")
		if num(t, fact(t, x, "pending")) != 1 {
			t.Fatalf("children facts %v", x["facts"])
		}
		x, _ = explained(t, tool, sessA, kids["ch-2"])
		wantExplained(t, x, "running", "ready", false, `on controller "kate/child"'s queue`)
		if fact(t, x, "parent_id") != parent {
			t.Fatalf("child's facts %v", x["facts"])
		}

		// Leased by the host's worker: the worker is named, its lease
		// token is not shown.
		leased := startFlow(t, tool, sessA, "crunch")
		f, l, err := e.m.Claim(ctx, "kate/ctrl", "worker-7", time.Minute, taskflow.WithClaimWait(0))
		if err != nil || f == nil || f.ID.String() != leased {
			t.Fatalf("claim: %v %v", f, err)
		}
		x, raw = explained(t, tool, sessA, leased)
		wantExplained(t, x, "running", "leased", false, "worker-7", "expires in 1m")
		if fact(t, x, "worker_id") != "worker-7" || strings.Contains(raw, l.Token) || strings.Contains(raw, "lease_token") {
			t.Fatalf("leased: %s (token %s)", raw, l.Token)
		}
		if lib := must(t, try(e.m.Explain(ctx, f.ID))); lib.Facts["lease_token"] != l.Token {
			t.Fatalf("the library's explanation has no lease token: %+v", lib)
		}

		// Ended.
		callFlow(t, tool, sessA, args(t, "action", "cancel", "flow_id", manual))
		x, _ = explained(t, tool, sessA, manual)
		wantExplained(t, x, "cancelled", "ended", false, "The flow cancelled")

		// The per-action tool answers the same; explain changes nothing.
		before := e.dump()
		out, err := tool.CallTool(ctx, sessA, NamePrefix+ActionExplain, json.RawMessage(`{"flow_id":"`+timer+`"}`))
		if err != nil || !strings.Contains(string(out), `"code":"waiting_timer"`) {
			t.Fatalf("taskflow_explain: %s %v", out, err)
		}
		e.sameDump(t, before, "explain")

		// An unknown flow is not_found; another session's is refused with
		// none of its data; explain takes only flow_id.
		missing := uuid.NewString()
		raw2, err := callRaw(t, tool, sessA, args(t, "action", "explain", "flow_id", missing))
		if want := `{"ok":false,"error":"not_found","flow_id":"` + missing + `"}`; err != nil || string(raw2) != want {
			t.Fatalf("unknown flow: %s %v, want %s", raw2, err, want)
		}
		for _, other := range []Session{sessB, sessC} {
			err := callErr(t, tool, other, args(t, "action", "explain", "flow_id", ev), ErrForbidden)
			wantText(t, err, "belongs to a different session")
			if strings.Contains(err.Error(), "email") || strings.Contains(err.Error(), "waiting") {
				t.Fatalf("refusal leaks: %v", err)
			}
		}
		err = callErr(t, tool, sessA, args(t, "action", "explain", "flow_id", ev, "patch", map[string]any{"a": 1}), ErrArgs)
		wantText(t, err, `explain does not take an argument "patch"`, "only flow_id")
		callErr(t, tool, sessA, `{"action":"explain"}`, ErrArgs)
	})
}
