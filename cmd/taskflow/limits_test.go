package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

// gated makes a running flow of controller test/cli carrying keys, with
// priority.
func (e *testEnv) gated(goal string, priority int, keys ...string) *taskflow.Flow {
	e.t.Helper()
	f, err := e.m.CreateMirrored(context.Background(), taskflow.CreateManagedInput{
		ControllerID: "test/cli", Goal: goal, OwnerSessionKey: ownerA, Concurrency: keys, Priority: priority,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

// claim claims a flow of test/cli without waiting; nil when the gate
// admits none.
func (e *testEnv) claim() *taskflow.Flow {
	e.t.Helper()
	f, _, err := e.m.Claim(context.Background(), "test/cli", "w", time.Minute, taskflow.WithClaimWait(0))
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

// TestLimits: an operator sets, lists and deletes key limits with the
// CLI, and the workers' claims obey each change from the next claim.
func TestLimits(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		e.create(ownerA, "the flow space exists")
		r := e.run("limits", "list").wantCode(t, 0)
		if strings.TrimSpace(r.stdout) != "no limits" || r.stderr != "" {
			t.Fatalf("list of none: %q %q", r.stdout, r.stderr)
		}
		var none []taskflow.KeyUsage
		e.runJSON(&none, "limits", "list")
		if none == nil || len(none) != 0 {
			t.Fatalf("list --json of none: %v", none)
		}

		r = e.run("limits", "set", "tenant:acme", "--concurrency", "2", "--weight", "3").wantCode(t, 0)
		if want := "limit tenant:acme set: concurrency 2, no rate bound, weight 3\n"; r.stdout != want {
			t.Fatalf("set printed %q, want %q", r.stdout, want)
		}
		var u taskflow.KeyUsage
		e.runJSON(&u, "limits", "set", "model:gpt-x", "--rate", "500", "--per", "1m")
		if u.Key != "model:gpt-x" || u.Rate != 500 || u.Per != time.Minute || u.Burst != 500 || u.Weight != 1 || u.Concurrency != 0 {
			t.Fatalf("set --json: %+v", u)
		}

		// Four flows of acme (two also on the model), one of another
		// tenant without a limit.
		var acme []uuid.UUID
		for i := range 4 {
			keys := []string{"tenant:acme"}
			if i < 2 {
				keys = append(keys, "model:gpt-x")
			}
			acme = append(acme, e.gated(fmt.Sprint("acme ", i), 0, keys...).ID)
			time.Sleep(2 * time.Millisecond) // age orders a group's flows
		}
		e.gated("free", 0, "tenant:free")
		claimed := 0
		for f := e.claim(); f != nil; f = e.claim() {
			claimed++
		}
		if claimed != 3 { // acme's 2 and free's 1
			t.Fatalf("%d claims under acme's limit of 2, want 3", claimed)
		}

		r = e.run("limits", "list").wantCode(t, 0)
		lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
		if len(lines) != 3 {
			t.Fatalf("list:\n%s", r.stdout)
		}
		for i, want := range [][]string{
			{"KEY", "IN", "FLIGHT", "CONCURRENCY", "RATE", "BURST", "WEIGHT", "BACKLOG"},
			{"model:gpt-x", "2", "-", "500/1m", "500", "1", "0"},
			{"tenant:acme", "2", "2", "-", "-", "3", "2"},
		} {
			if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Fatalf("list line %d: %q, want %q\n%s", i, got, want, r.stdout)
			}
		}
		var list []taskflow.KeyUsage
		e.runJSON(&list, "limits", "list")
		if len(list) != 2 || list[1].Key != "tenant:acme" || list[1].InFlight != 2 || list[1].Backlog != 2 || list[1].Concurrency != 2 ||
			list[0].InFlight != 2 || list[0].Rate != 500 {
			t.Fatalf("list --json: %+v", list)
		}

		// stats prints the same figures.
		r = e.run("stats").wantCode(t, 0)
		for _, want := range []string{"key model:gpt-x  ", "2 in flight of -, rate 500/1m, backlog 0, weight 1",
			"key tenant:acme", "2 in flight of 2, rate -, backlog 2, weight 3"} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("stats lacks %q:\n%s", want, r.stdout)
			}
		}
		var st taskflow.Stats
		e.runJSON(&st, "stats")
		if len(st.Keys) != 2 || st.Keys[1].Key != "tenant:acme" || st.Keys[1].Backlog != 2 {
			t.Fatalf("stats --json keys: %+v", st.Keys)
		}

		// Raising the limit holds from the next claim.
		e.run("limits", "set", "tenant:acme", "--concurrency", "3").wantCode(t, 0)
		if f := e.claim(); f == nil || f.ID != acme[2] {
			t.Fatalf("after raising the limit to 3: %v, want %s", f, acme[2])
		}
		if f := e.claim(); f != nil {
			t.Fatalf("a claim over the limit of 3: %s", f.ID)
		}
		// Deleting it releases the flow that waited.
		r = e.run("limits", "delete", "tenant:acme").wantCode(t, 0)
		if r.stdout != "limit tenant:acme deleted (its flows are claimed without bound)\n" {
			t.Fatalf("delete printed %q", r.stdout)
		}
		if f := e.claim(); f == nil || f.ID != acme[3] {
			t.Fatalf("after deleting the limit: %v, want %s", f, acme[3])
		}
		e.run("limits", "delete", "tenant:acme").wantCode(t, 1).wantOneLineError(t, `key "tenant:acme" has no limit`)
		e.run("limits", "delete", "tenant:acme", "--json").wantCode(t, 1).wantJSONError(t, "has no limit")
		var del map[string]any
		e.runJSON(&del, "limits", "delete", "model:gpt-x")
		if del["key"] != "model:gpt-x" || del["deleted"] != true {
			t.Fatalf("delete --json: %v", del)
		}
		if got, err := e.m.KeyLimits(context.Background()); err != nil || len(got) != 0 {
			t.Fatalf("limits left: %+v %v", got, err)
		}
		if r := e.run("stats").wantCode(t, 0); strings.Contains(r.stdout, "key ") {
			t.Fatalf("stats lists keys with no limit:\n%s", r.stdout)
		}
	})
}

// TestLimitsNoFlowSpace: limits may be set before the first flow, with a
// warning that names the flow spaces that exist.
func TestLimitsNoFlowSpace(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		r := e.run("limits", "set", "tenant:acme", "--concurrency", "1").wantCode(t, 0)
		if !strings.Contains(r.stderr, "warning: no flow space") || !strings.Contains(r.stderr, "its limits apply to the flows to come") {
			t.Fatalf("set on no flow space: stderr %q", r.stderr)
		}
		if got, err := e.m.KeyLimits(context.Background()); err != nil || len(got) != 1 || got[0].Concurrency != 1 {
			t.Fatalf("limits: %+v %v", got, err)
		}
	})
}

func TestLimitsBadInput(t *testing.T) {
	// Refused before any connection.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"limits"}, "limits: missing action (set, list, delete)"},
		{[]string{"limits", "sett"}, `unknown action "sett"; did you mean "set"?`},
		{[]string{"limits", "set"}, "missing <key>"},
		{[]string{"limits", "set", "a", "b"}, `unexpected argument "b"`},
		{[]string{"limits", "set", "k", "--concurrency", "-1"}, "--concurrency -1 is outside 0..1000000000"},
		{[]string{"limits", "set", "k", "--concurrency", "many"}, "--concurrency"},
		{[]string{"limits", "set", "k", "--weight", "1001"}, "--weight 1001 is outside 0..1000"},
		{[]string{"limits", "set", "k", "--per", "1m"}, "give --rate N too"},
		{[]string{"limits", "set", "k", "--burst", "5"}, "give --rate N too"},
		{[]string{"limits", "set", "k", "--rate", "5", "--per", "2d"}, "--per 2d is outside 1ms..1d"},
		{[]string{"limits", "set", "k", "--rate", "5", "--per", "soon"}, "want a duration"},
		{[]string{"limits", "set", "k", "--bogus"}, "unknown flag --bogus"},
		{[]string{"limits", "list", "x"}, `unexpected argument "x"`},
		{[]string{"limits", "delete"}, "missing <key>"},
	} {
		r := runCLI(t, c.args...)
		if r.code != 2 {
			t.Errorf("%v: exit status %d, want 2 (stderr %q)", c.args, r.code, r.stderr)
			continue
		}
		r.wantOneLineError(t, c.want)
	}
	// Every action's help: its usage, in 80 columns.
	for _, a := range []string{"set", "list", "delete"} {
		r := runCLI(t, "help", "limits", a).wantCode(t, 0)
		if !strings.HasPrefix(r.stdout, "usage: taskflow limits "+a) {
			t.Fatalf("help limits %s: %q", a, r.stdout)
		}
		for _, line := range strings.Split(r.stdout, "\n") {
			if n := utf8.RuneCountInString(line); n > lineWidth {
				t.Errorf("help limits %s: a line of %d columns: %q", a, n, line)
			}
		}
	}
	// Refused by the library: the key.
	eachBackend(t, func(t *testing.T, e *testEnv) {
		e.create(ownerA, "the flow space exists")
		for _, c := range []struct {
			key, want string
		}{
			{"has space", `concurrency key "has space" holds ' '`},
			{"a|b", "use letters, digits and _.:/@=+-"},
			{strings.Repeat("k", 129), "is not 1 to 128 bytes"},
		} {
			e.run("limits", "set", c.key, "--concurrency", "1").wantCode(t, 2).wantOneLineError(t, c.want)
			e.run("limits", "delete", c.key).wantCode(t, 1).wantOneLineError(t, "has no limit")
		}
		e.run("limits", "set", "a|b", "--json").wantCode(t, 2).wantJSONError(t, "use letters")
		if got, err := e.m.KeyLimits(context.Background()); err != nil || len(got) != 0 {
			t.Fatalf("bad input left limits: %+v %v", got, err)
		}
	})
}

// TestShowConcurrency: show prints a flow's concurrency keys and
// priority, and omits them for a flow without.
func TestShowConcurrency(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		f := e.gated("gated", 7, "tenant:acme", "model:gpt-x")
		r := e.run("show", f.ID.String()).wantCode(t, 0)
		for _, want := range []string{"concurrency_keys:", "tenant:acme, model:gpt-x", "priority:", "7"} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("show lacks %q:\n%s", want, r.stdout)
			}
		}
		var d flowDetail
		e.runJSON(&d, "show", f.ID.String())
		if strings.Join(d.Flow.Concurrency, ",") != "tenant:acme,model:gpt-x" || d.Flow.Priority != 7 {
			t.Fatalf("show --json: %+v", d.Flow)
		}
		plain := e.running(ownerA, "plain")
		if r := e.run("show", plain.ID.String()).wantCode(t, 0); strings.Contains(r.stdout, "concurrency_keys") || strings.Contains(r.stdout, "priority") {
			t.Fatalf("show of a flow without keys:\n%s", r.stdout)
		}
	})
}

// TestScheduleConcurrency: a schedule's flows carry the --key and
// --priority given at create; update replaces them, --key ” clears.
func TestScheduleConcurrency(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		var sc taskflow.Schedule
		e.runJSON(&sc, append([]string{"schedule", "create", "feed", "--every", "1h", "--key", "tenant:acme", "--key", "model:gpt-x",
			"--priority", "5"}, flowArgs...)...)
		if strings.Join(sc.Flow.Concurrency, ",") != "tenant:acme,model:gpt-x" || sc.Flow.Priority != 5 {
			t.Fatalf("created %+v", sc.Flow)
		}
		var f taskflow.Flow
		e.runJSON(&f, "schedule", "trigger", "feed")
		if got := e.get(f.ID); strings.Join(got.Concurrency, ",") != "tenant:acme,model:gpt-x" || got.Priority != 5 {
			t.Fatalf("triggered flow: keys %v, priority %d", got.Concurrency, got.Priority)
		}
		r := e.run("schedule", "show", "feed").wantCode(t, 0)
		if !strings.Contains(r.stdout, "tenant:acme, model:gpt-x") || !strings.Contains(r.stdout, "flow priority") {
			t.Fatalf("schedule show:\n%s", r.stdout)
		}
		e.runJSON(&sc, "schedule", "update", "feed", "--key", "tenant:beta")
		if strings.Join(sc.Flow.Concurrency, ",") != "tenant:beta" || sc.Flow.Priority != 5 {
			t.Fatalf("updated %+v", sc.Flow)
		}
		var cleared taskflow.Schedule // a fresh one: the JSON omits no keys and priority 0
		e.runJSON(&cleared, "schedule", "update", "feed", "--key", "", "--priority", "0")
		if cleared.Name != "feed" || len(cleared.Flow.Concurrency) != 0 || cleared.Flow.Priority != 0 {
			t.Fatalf("cleared %+v", cleared.Flow)
		}
		if got, err := e.m.GetSchedule(context.Background(), "feed", 1); err != nil || len(got.Flow.Concurrency) != 0 || got.Flow.Priority != 0 {
			t.Fatalf("stored after clearing: %+v %v", got, err)
		}
		e.run(append([]string{"schedule", "create", "x", "--every", "1h", "--priority", "10"}, flowArgs...)...).
			wantCode(t, 2).wantOneLineError(t, "--priority 10 is outside 0..9")
		e.run(append([]string{"schedule", "create", "x", "--every", "1h", "--key", "a b"}, flowArgs...)...).
			wantCode(t, 2).wantOneLineError(t, `concurrency key "a b"`)
	})
}
