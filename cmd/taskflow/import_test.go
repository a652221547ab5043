package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

// originalDB writes a small database in the original's schema: a flow
// waiting on a due timer, one waiting for an external event, a finished
// one with steps and events, and a row with a bad state. It returns the
// path and the ids by name.
func originalDB(t *testing.T) (string, map[string]string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nexo.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`CREATE TABLE flows (id TEXT PRIMARY KEY, controller_id TEXT NOT NULL, goal TEXT NOT NULL,
		owner_session_key TEXT NOT NULL, requester_origin TEXT NOT NULL, current_step TEXT NOT NULL,
		state_json TEXT NOT NULL DEFAULT '{}', wait_json TEXT, status TEXT NOT NULL,
		cancel_requested INTEGER NOT NULL DEFAULT 0, revision INTEGER NOT NULL DEFAULT 0,
		created_at TEXT NOT NULL, updated_at TEXT NOT NULL)`)
	exec(`CREATE TABLE flow_steps (id TEXT PRIMARY KEY, flow_id TEXT NOT NULL REFERENCES flows(id) ON DELETE CASCADE,
		runtime TEXT NOT NULL, child_session_key TEXT, run_id TEXT NOT NULL, task TEXT NOT NULL,
		status TEXT NOT NULL, result_json TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)`)
	exec(`CREATE UNIQUE INDEX idx_flow_steps_run ON flow_steps(flow_id, run_id)`)
	exec(`CREATE TABLE flow_events (id INTEGER PRIMARY KEY AUTOINCREMENT,
		flow_id TEXT NOT NULL REFERENCES flows(id) ON DELETE CASCADE, kind TEXT NOT NULL,
		payload_json TEXT NOT NULL, at TEXT NOT NULL)`)
	ts := func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000000+00:00") }
	created := time.Now().Add(-time.Hour)
	ids := map[string]string{}
	flow := func(name, status, state string, wait any, rev int) string {
		id := uuid.NewString()
		ids[name] = id
		exec(`INSERT INTO flows VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`, id, "legacy/cli", "goal "+name,
			"agent:a:session:"+name, "user", "step", state, wait, status, 0, rev, ts(created), ts(created.Add(time.Minute)))
		exec(`INSERT INTO flow_events (flow_id, kind, payload_json, at) VALUES (?,?,?,?)`, id, "created", `{"n":1}`, ts(created))
		exec(`INSERT INTO flow_events (flow_id, kind, payload_json, at) VALUES (?,?,?,?)`, id, "started", `{}`, ts(created.Add(time.Second)))
		return id
	}
	flow("timer", "waiting", `{"a":1}`, `{"kind":"timer","at":"`+ts(time.Now().Add(-time.Minute))+`"}`, 3)
	flow("external", "waiting", `{}`, `{"kind":"external_event","topic":"mail","correlation_id":"c-1"}`, 3)
	done := flow("finished", "finished", `{"result":"ok"}`, nil, 5)
	exec(`INSERT INTO flow_steps VALUES (?,?,?,?,?,?,?,?,?,?)`, uuid.NewString(), done, "managed", nil, "run-1",
		"fetch", "succeeded", `{"ok":true}`, ts(created), ts(created))
	flow("bad", "running", `{"broken":`, nil, 1)
	return path, ids
}

func TestImportVerb(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		path, ids := originalDB(t)

		r := e.run("import", "--sqlite", path, "--dry-run").wantCode(t, 1)
		if !strings.Contains(r.stdout, "4 rows: would import 3, unchanged 0, skipped 1") || !strings.Contains(r.stdout, "dry run") ||
			!strings.Contains(r.stdout, ids["bad"]) || !strings.Contains(r.stdout, "state_json is not valid JSON") {
			t.Fatalf("dry run output:\n%s", r.stdout)
		}
		r.wantOneLineError(t, "1 row not imported")
		if keys := e.scanKeys(e.prefix + ":*:flow:*"); len(keys) != 0 {
			t.Fatalf("the dry run wrote flows: %v", keys)
		}

		r = e.run("import", "--sqlite", path).wantCode(t, 1)
		if !strings.Contains(r.stdout, "4 rows: imported 3, unchanged 0, skipped 1") {
			t.Fatalf("import output:\n%s", r.stdout)
		}
		ctx := context.Background()
		f, err := e.m.Get(ctx, uuid.MustParse(ids["finished"]))
		if err != nil || f.Status != taskflow.StatusFinished || f.Revision != 5 || f.Goal != "goal finished" {
			t.Fatalf("imported flow: %+v %v", f, err)
		}
		if steps, _ := e.m.ListSteps(ctx, f.ID); len(steps) != 1 || steps[0].RunID != "run-1" {
			t.Fatalf("imported steps: %+v", steps)
		}
		if evs, _ := e.m.ListEvents(ctx, f.ID, 10); len(evs) != 2 || evs[0].Kind != "started" || evs[1].Kind != "created" {
			t.Fatalf("imported events: %+v", evs)
		}
		e.run("fsck").wantCode(t, 0)

		// Again: nothing changes, and it says so.
		var rep struct {
			Imported, Unchanged, Skipped int
			Flows                        []struct{ ID, Outcome, Reason string }
		}
		r = e.run("import", "--sqlite", path, "--json").wantCode(t, 1)
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("%v\n%s", err, r.stdout)
		}
		if rep.Imported != 0 || rep.Unchanged != 3 || rep.Skipped != 1 || len(rep.Flows) != 1 || rep.Flows[0].ID != ids["bad"] {
			t.Fatalf("second import: %+v", rep)
		}
		r = e.run("import", "--sqlite", path).wantCode(t, 1)
		if !strings.HasPrefix(r.stdout, "nothing to import; 4 rows: imported 0, unchanged 3, skipped 1") {
			t.Fatalf("second import output:\n%s", r.stdout)
		}

		// The engine resumes the due timer; the external wait waits.
		var tick struct {
			Resumed      int
			StillWaiting int `json:"still_waiting"`
		}
		e.runJSON(&tick, "tick")
		if tick.Resumed != 1 || tick.StillWaiting != 1 {
			t.Fatalf("tick after import: %+v", tick)
		}
	})
}

func TestImportVerbBadUsage(t *testing.T) {
	runCLI(t, "import").wantCode(t, 2).wantOneLineError(t, "--sqlite PATH is required")
	runCLI(t, "import", "--sqlite", filepath.Join(t.TempDir(), "missing.db"), "--redis", "redis://127.0.0.1:1/0").
		wantCode(t, 1).wantOneLineError(t, "no such file")
}
