package agenttool

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/taskflow-dev/taskflow"
)

// startWith starts a flow of controller with search attributes through
// the tool, a millisecond after the one before (list_mine orders by
// creation time), and returns its id.
func startWith(t *testing.T, e *env, tool *Tool, s Session, controller string, attrs map[string]string) string {
	t.Helper()
	e.clock.Advance(time.Millisecond)
	f := callFlow(t, tool, s, args(t, "action", "start", "controller_id", controller, "goal", "g", "attributes", attrs))
	got, _ := f["attributes"].(map[string]any)
	if len(got) != len(attrs) {
		t.Fatalf("started flow's attributes %v, want %v", f["attributes"], attrs)
	}
	for k, v := range attrs {
		if got[k] != v {
			t.Fatalf("started flow's attributes %v, want %v", got, attrs)
		}
	}
	return f["id"].(string)
}

// listed runs a list_mine by s with the filters kv and returns the ids
// of the page's flows and its next_cursor.
func listed(t *testing.T, tool *Tool, s Session, kv ...any) ([]string, string) {
	t.Helper()
	res := callOK(t, tool, s, args(t, append([]any{"action", "list_mine"}, kv...)...))
	var ids []string
	for _, f := range res["flows"].([]any) {
		fl := f.(map[string]any)
		checkFlowKeys(t, fl)
		ids = append(ids, fl["id"].(string))
	}
	if num(t, res["count"]) != int64(len(ids)) {
		t.Fatalf("count %v, %d flows", res["count"], len(ids))
	}
	next, _ := res["next_cursor"].(string)
	if res["truncated"] != (next != "") {
		t.Fatalf("truncated %v with next_cursor %q", res["truncated"], next)
	}
	return ids, next
}

// wantListed wants exactly ids, in that order, on one page.
func wantListed(t *testing.T, tool *Tool, s Session, kv []any, ids ...string) {
	t.Helper()
	got, next := listed(t, tool, s, kv...)
	if strings.Join(got, ",") != strings.Join(ids, ",") || next != "" {
		t.Fatalf("list_mine %v by %s: %v (next %q), want %v", kv, s.SessionID, got, next, ids)
	}
}

func TestListMineFilters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		acme := map[string]string{"customer": "acme"}
		a1 := startWith(t, e, tool, sessA, "kate/upload", map[string]string{"customer": "acme", "chapter": "7"})
		a2 := startWith(t, e, tool, sessA, "kate/upload", map[string]string{"customer": "globex"})
		a3 := startWith(t, e, tool, sessA, "kate/triage", acme)
		a4 := startWith(t, e, tool, sessA, "kate/upload", acme)
		callFlow(t, tool, sessA, args(t, "action", "wait", "flow_id", a4, "wait_condition", map[string]any{"kind": "manual"}))
		// The same controller and attribute in another session of the
		// agent, in another agent, and in a flow the host made.
		b1 := startWith(t, e, tool, sessB, "kate/upload", acme)
		startWith(t, e, tool, sessC, "bob/upload", acme)
		if _, err := e.m.CreateManaged(e.ctx, taskflow.CreateManagedInput{ControllerID: "kate/upload", Goal: "host's",
			OwnerSessionKey: "agent:kate:session:host", Attributes: acme}); err != nil {
			t.Fatal(err)
		}

		wantListed(t, tool, sessA, nil, a4, a3, a2, a1)
		wantListed(t, tool, sessA, []any{"controller_id", "kate/upload", "attribute", "customer=acme"}, a4, a1)
		wantListed(t, tool, sessA, []any{"controller_id", "kate/upload", "attribute", "customer=acme", "status", "waiting"}, a4)
		wantListed(t, tool, sessA, []any{"attribute", "customer=acme"}, a4, a3, a1)
		wantListed(t, tool, sessA, []any{"attribute", "chapter=7"}, a1)
		wantListed(t, tool, sessA, []any{"status", "running"}, a3, a2, a1)
		wantListed(t, tool, sessA, []any{"attribute", "customer=initech"})
		// A session never sees another's flows, whatever it filters on.
		wantListed(t, tool, sessB, []any{"controller_id", "kate/upload", "attribute", "customer=acme"}, b1)
		wantListed(t, tool, sessC, []any{"controller_id", "kate/upload"})
		wantListed(t, tool, sessC, []any{"attribute", "customer=acme", "controller_id", "kate/upload"})

		// total counts all the session's flows, whatever the filters.
		res := callOK(t, tool, sessA, args(t, "action", "list_mine", "attribute", "chapter=7"))
		if num(t, res["total"]) != 4 || num(t, res["count"]) != 1 || res["truncated"] != false {
			t.Fatalf("list_mine: %v", res)
		}
		if _, ok := res["next_cursor"]; ok {
			t.Fatalf("next_cursor after the last page: %v", res)
		}
		f := res["flows"].([]any)[0].(map[string]any)
		if a := f["attributes"].(map[string]any); a["chapter"] != "7" || a["customer"] != "acme" || len(a) != 2 {
			t.Fatalf("attributes %v", f["attributes"])
		}

		// Pages of one follow the cursor, each flow once, filters kept.
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatal("too many pages")
			}
			kv := []any{"attribute", "customer=acme", "limit", 1}
			if cursor != "" {
				kv = append(kv, "cursor", cursor)
			}
			ids, next := listed(t, tool, sessA, kv...)
			got = append(got, ids...)
			if cursor = next; cursor == "" {
				break
			}
		}
		if strings.Join(got, ",") != strings.Join([]string{a4, a3, a1}, ",") {
			t.Fatalf("paged %v, want %v", got, []string{a4, a3, a1})
		}
		// Another session following the same cursor still sees only its own.
		first, next := listed(t, tool, sessA, "attribute", "customer=acme", "limit", 1)
		if len(first) != 1 || next == "" {
			t.Fatalf("first page %v, next %q", first, next)
		}
		if ids, _ := listed(t, tool, sessB, "attribute", "customer=acme", "cursor", next); len(ids) > 1 || (len(ids) == 1 && ids[0] != b1) {
			t.Fatalf("session B with A's cursor: %v", ids)
		}

		// Bad filters say what to fix.
		for _, c := range []struct {
			kv   []any
			want string
		}{
			{[]any{"status", "done"}, `"status" is "done"; use one of created, running`},
			{[]any{"attribute", "customer"}, `"attribute" must be "name=value"`},
			{[]any{"attribute", "Customer=acme"}, `may hold only`},
			{[]any{"cursor", "nonsense"}, `"cursor" "nonsense" is not a next_cursor`},
			{[]any{"limit", 0}, `"limit" is 0; it must be 1 to 100`},
			{[]any{"limit", ListLimit + 1}, `it must be 1 to 100`},
		} {
			wantText(t, callErr(t, tool, sessA, args(t, append([]any{"action", "list_mine"}, c.kv...)...), ErrArgs), c.want)
		}
	})
}

func TestStartAndSpawnAttributes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		before := e.dump()
		for _, c := range []struct {
			attrs any
			want  string
		}{
			{map[string]any{"priority": 2}, `attribute "priority" must be a string (write a number as a string, e.g. "2"), not a number`},
			{"customer=acme", `"attributes" must be a JSON object, not a string`},
			{map[string]any{"Customer": "acme"}, `attribute name "Customer" may hold only`},
			{map[string]any{"customer": ""}, `must be 1 to 256 bytes`},
			{map[string]any{"a": "1", "b": "1", "c": "1", "d": "1", "e": "1", "f": "1", "g": "1", "h": "1", "i": "1"}, "9 attributes, at most 8"},
		} {
			err := callErr(t, tool, sessA, args(t, "action", "start", "controller_id", "kate/upload", "goal", "g", "attributes", c.attrs), ErrArgs)
			wantText(t, err, c.want)
		}
		e.sameDump(t, before, "refused starts")

		// The strict and Gemini shapes send the object as a string.
		f := callFlow(t, tool, sessA, `{"action":"start","controller_id":"kate/book","goal":"g","attributes_json":"{\"customer\":\"acme\"}","state_json":null}`)
		if a := f["attributes"].(map[string]any); a["customer"] != "acme" {
			t.Fatalf("attributes_json: %v", f["attributes"])
		}
		parent := f["id"].(string)
		call := args(t, "action", "spawn", "flow_id", parent, "children", []any{
			map[string]any{"key": "ch-1", "controller_id": "kate/chapter", "goal": "one", "attributes": map[string]string{"chapter": "1", "customer": "acme"}},
			map[string]any{"key": "ch-2", "controller_id": "kate/chapter", "goal": "two", "attributes_json": `{"chapter":"2"}`},
		})
		kids := spawned(t, tool, sessA, call)
		wantListed(t, tool, sessA, []any{"attribute", "chapter=2"}, kids["ch-2"])
		ids, _ := listed(t, tool, sessA, "attribute", "customer=acme")
		sort.Strings(ids)
		want := []string{parent, kids["ch-1"]}
		sort.Strings(want)
		if strings.Join(ids, ",") != strings.Join(want, ",") {
			t.Fatalf("customer=acme: %v, want %v", ids, want)
		}
		before = e.dump()
		bad := args(t, "action", "spawn", "flow_id", parent, "children", []any{
			map[string]any{"key": "ch-3", "controller_id": "kate/chapter", "goal": "three", "attributes": map[string]any{"chapter": 3}},
		})
		wantText(t, callErr(t, tool, sessA, bad, ErrArgs), `children[0].attributes: attribute "chapter" must be a string`)
		e.sameDump(t, before, "a refused spawn")
	})
}
