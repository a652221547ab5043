package main

import (
	"context"
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

// find creates a flow of controller with attributes, for the filter tests.
func (e *testEnv) find(controller, owner string, attrs map[string]string) *taskflow.Flow {
	e.t.Helper()
	f, err := e.m.CreateManaged(context.Background(), taskflow.CreateManagedInput{
		ControllerID: controller, Goal: "find me", OwnerSessionKey: owner, Attributes: attrs,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

func TestListFilters(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		acme := map[string]string{"customer": "acme"}
		// Apart by a few milliseconds: Find orders by creation time.
		a1 := e.find("kate/upload", ownerA, map[string]string{"customer": "acme", "chapter": "7"})
		time.Sleep(3 * time.Millisecond)
		e.find("kate/upload", ownerA, map[string]string{"customer": "globex"})
		time.Sleep(3 * time.Millisecond)
		e.find("kate/triage", ownerA, acme)
		time.Sleep(3 * time.Millisecond)
		a2 := e.find("kate/upload", ownerB, acme)
		time.Sleep(3 * time.Millisecond)
		a3 := e.find("kate/upload", ownerA, acme)
		e.create(ownerA, "no attributes") // test/cli
		if _, err := e.m.StartRunning(ctx, a2.ID); err != nil {
			t.Fatal(err)
		}

		wantIDs(t, e, []string{"list", "--controller", "kate/upload", "--attr", "customer=acme"}, a3, a2, a1)
		wantIDs(t, e, []string{"list", "--controller", "kate/upload", "--attr", "customer=acme", "--status", "running"}, a2)
		wantIDs(t, e, []string{"list", "--controller", "kate/upload", "--attr", "customer=acme", "--owner", ownerA}, a3, a1)
		wantIDs(t, e, []string{"list", "--attr", "chapter=7"}, a1)
		wantIDs(t, e, []string{"list", "--attr", "customer=initech"})
		wantIDs(t, e, []string{"list", "--controller", "kate/nobody"})
		// --owner with one status goes through Find too; with two it
		// filters the owner's list.
		wantIDs(t, e, []string{"list", "--owner", ownerB, "--status", "running"}, a2)
		wantIDs(t, e, []string{"list", "--owner", ownerB, "--status", "running,created"}, a2)

		// The JSON carries the attributes; the table shows them.
		var page struct {
			Flows []map[string]any `json:"flows"`
		}
		e.runJSON(&page, "list", "--attr", "chapter=7")
		if a, _ := page.Flows[0]["attributes"].(map[string]any); a["chapter"] != "7" || a["customer"] != "acme" || len(a) != 2 {
			t.Fatalf("attributes in JSON: %v", page.Flows[0]["attributes"])
		}
		r := e.run("list", "--controller", "kate/upload", "--attr", "customer=acme").wantCode(t, 0)
		if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 4 || !strings.Contains(lines[0], "ATTRIBUTES") ||
			!strings.Contains(r.stdout, "chapter=7,customer=acme") || strings.Contains(r.stdout, "next:") {
			t.Fatalf("table:\n%s", r.stdout)
		}
		r = e.run("list", "--attr", "customer=initech").wantCode(t, 0)
		if !strings.HasPrefix(r.stdout, "no flows match in flow space") {
			t.Fatalf("empty list says %q", r.stdout)
		}

		// Paging keeps the filters: one flow a page, each once.
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatal("too many pages")
			}
			var p listPage
			args := []string{"list", "--controller", "kate/upload", "--attr", "customer=acme", "--limit", "1"}
			if cursor != "" {
				args = append(args, "--cursor", cursor)
			}
			e.runJSON(&p, args...)
			for _, f := range p.Flows {
				got = append(got, f.ID.String())
			}
			if cursor = p.Next; cursor == "" {
				break
			}
		}
		if want := []string{a3.ID.String(), a2.ID.String(), a1.ID.String()}; strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("paged %v, want %v", got, want)
		}
		r = e.run("list", "--attr", "customer=acme", "--limit", "1").wantCode(t, 0)
		if !strings.Contains(r.stdout, "next: --cursor ") {
			t.Fatalf("no next line:\n%s", r.stdout)
		}

		// Bad input: a clear one-line usage error, exit status 2.
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"--attr", "customer"}, `"customer" is not name=value`},
			{[]string{"--attr", "=acme"}, `"=acme" is not name=value`},
			{[]string{"--attr", "customer="}, `"customer=" is not name=value`},
			{[]string{"--attr", "a=1", "--attr", "b=2"}, "one attribute"},
			{[]string{"--attr", "Customer=acme"}, `attribute name "Customer" may hold only`},
			{[]string{"--controller", "kate/upload", "--status", "running,waiting"}, "--status takes one status with --controller or --attr, not 2"},
			{[]string{"--controller", "kate/upload", "--cursor", "nonsense"}, "not a list cursor"},
		} {
			e.run(append([]string{"list"}, c.args...)...).wantCode(t, 2).wantOneLineError(t, c.want)
		}
		e.run("list", "--attr", "customer", "--json").wantCode(t, 2).wantJSONError(t, "is not name=value")
	})
}
