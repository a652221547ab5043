package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/taskflow-dev/taskflow"
)

func TestList(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		// Apart by a few milliseconds: the lists order by millisecond.
		created := e.create(ownerA, "a created flow")
		time.Sleep(3 * time.Millisecond)
		running := e.running(ownerA, "a running flow with a goal that is much longer than fifty runes, ünïcödé")
		time.Sleep(3 * time.Millisecond)
		waiting := e.waiting(ownerB, taskflow.WaitManual())

		r := e.run("list").wantCode(t, 0)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") ||
			!strings.Contains(lines[0], "STATUS") || !strings.Contains(lines[0], "GOAL") {
			t.Fatalf("table:\n%s", r.stdout)
		}
		for _, f := range []*taskflow.Flow{created, running, waiting} {
			if !strings.Contains(r.stdout, f.ID.String()) {
				t.Fatalf("flow %s missing from:\n%s", f.ID, r.stdout)
			}
		}
		if !strings.Contains(r.stdout, "…") || strings.Contains(r.stdout, "ünïcödé") {
			t.Fatalf("long goal not truncated:\n%s", r.stdout)
		}

		var page struct {
			Flows []map[string]any `json:"flows"`
			Next  *string          `json:"next"`
		}
		e.runJSON(&page, "list")
		if len(page.Flows) != 3 || page.Next == nil || *page.Next != "" {
			t.Fatalf("json page: %+v", page)
		}
		for _, k := range []string{"id", "controller_id", "goal", "owner_session_key", "requester_origin",
			"current_step", "state_json", "status", "cancel_requested", "revision", "created_at", "updated_at"} {
			if _, ok := page.Flows[0][k]; !ok {
				t.Fatalf("flow JSON lacks %q: %v", k, page.Flows[0])
			}
		}
		if page.Flows[0]["id"] != waiting.ID.String() || page.Flows[0]["status"] != "waiting" {
			t.Fatalf("newest first: want the waiting flow first, got %v", page.Flows[0])
		}
		if w, ok := page.Flows[0]["wait_json"].(map[string]any); !ok || w["kind"] != "manual" {
			t.Fatalf("wait_json: %v", page.Flows[0]["wait_json"])
		}

		wantIDs(t, e, []string{"list", "--status", "waiting"}, waiting)
		wantIDs(t, e, []string{"list", "--status", "created,running"}, running, created)
		wantIDs(t, e, []string{"list", "--status", "created", "--status", "waiting"}, waiting, created)
		wantIDs(t, e, []string{"list", "--owner", ownerA}, running, created)
		wantIDs(t, e, []string{"list", "--owner", ownerA, "--status", "running"}, running)
		wantIDs(t, e, []string{"list", "--owner", ownerB, "--status", "running"})
		wantIDs(t, e, []string{"list", "--status", "finished"})
	})
}

func TestListPages(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		var ids []string
		for i := 0; i < 5; i++ {
			ids = append(ids, e.create(ownerA, fmt.Sprintf("flow %d", i)).ID.String())
			time.Sleep(2 * time.Millisecond)
		}
		r := e.run("list", "--limit", "2").wantCode(t, 0)
		if !strings.Contains(r.stdout, "next: --cursor ") {
			t.Fatalf("no next line:\n%s", r.stdout)
		}
		seen := map[string]bool{}
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 5 {
				t.Fatal("too many pages")
			}
			var page listPage
			args := []string{"list", "--limit", "2"}
			if cursor != "" {
				args = append(args, "--cursor", cursor)
			}
			e.runJSON(&page, args...)
			for _, f := range page.Flows {
				if seen[f.ID.String()] {
					t.Fatalf("flow %s on two pages", f.ID)
				}
				seen[f.ID.String()] = true
			}
			if cursor = page.Next; cursor == "" {
				break
			}
		}
		if len(seen) != len(ids) {
			t.Fatalf("paged through %d flows, want %d", len(seen), len(ids))
		}
		e.run("list", "--cursor", "nonsense").wantCode(t, 2).wantOneLineError(t, "not a list cursor")
	})
}

// wantIDs runs a list with --json and wants exactly the flows, in order.
func wantIDs(t *testing.T, e *testEnv, args []string, want ...*taskflow.Flow) {
	t.Helper()
	var page listPage
	e.runJSON(&page, args...)
	var got, exp []string
	for _, f := range page.Flows {
		got = append(got, f.ID.String())
	}
	for _, f := range want {
		exp = append(exp, f.ID.String())
	}
	if strings.Join(got, ",") != strings.Join(exp, ",") {
		t.Fatalf("%v: got %v, want %v", args, got, exp)
	}
}

// A --shards that does not match the flow space's is answered with the
// flag to use, not the Go option.
func TestListWrongShardsNamesTheFlag(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		e.create(ownerA, "sixteen shards")
		r := e.run("list", "--shards", "8").wantCode(t, 1)
		if !strings.Contains(r.stderr, "--shards 16") || strings.Contains(r.stderr, "WithShards") {
			t.Fatalf("stderr %q", r.stderr)
		}
	})
}
