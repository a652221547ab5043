package importer

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/internal/testbackend"
)

// The tests build a database with the original's schema, import it into
// every backend (miniredis always; the real Redis at
// TASKFLOW_TEST_REDIS_URL, default redis://127.0.0.1:6379/0, when it
// answers or TASKFLOW_TEST_REQUIRE_REDIS=1; the Redis Cluster of
// TASKFLOW_TEST_CLUSTER_ADDRS) and compare every field with the rows.

// originalSchema is the original's SQLite schema (nexo-taskflow 0.1.3):
// the tables and indexes its store creates.
const originalSchema = `
CREATE TABLE flows (
    id TEXT PRIMARY KEY, controller_id TEXT NOT NULL, goal TEXT NOT NULL,
    owner_session_key TEXT NOT NULL, requester_origin TEXT NOT NULL,
    current_step TEXT NOT NULL, state_json TEXT NOT NULL DEFAULT '{}',
    wait_json TEXT, status TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    revision INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX idx_flows_owner ON flows(owner_session_key);
CREATE INDEX idx_flows_status ON flows(status);
CREATE TABLE flow_steps (
    id TEXT PRIMARY KEY,
    flow_id TEXT NOT NULL REFERENCES flows(id) ON DELETE CASCADE,
    runtime TEXT NOT NULL, child_session_key TEXT, run_id TEXT NOT NULL,
    task TEXT NOT NULL, status TEXT NOT NULL, result_json TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX idx_flow_steps_flow ON flow_steps(flow_id);
CREATE UNIQUE INDEX idx_flow_steps_run ON flow_steps(flow_id, run_id);
CREATE TABLE flow_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    flow_id TEXT NOT NULL REFERENCES flows(id) ON DELETE CASCADE,
    kind TEXT NOT NULL, payload_json TEXT NOT NULL, at TEXT NOT NULL);
CREATE INDEX idx_flow_events_flow ON flow_events(flow_id);
`

// chrono formats a time as the original's chrono to_rfc3339 does.
func chrono(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000000+00:00") }

// row is one flows row of the fixture.
type row struct {
	id, controller, goal, owner, origin, step, state string
	wait                                             *string
	status                                           string
	cancel, revision                                 int64
	created, updated                                 time.Time
}

type stepRow struct {
	id, flowID, runtime string
	child               *string
	runID, task, status string
	result              *string
	created, updated    time.Time
}

type eventRow struct {
	id                    int64
	flowID, kind, payload string
	at                    time.Time
}

// fixture is a database of the original and what it holds.
type fixture struct {
	path   string
	now    time.Time
	flows  []*row
	steps  map[string][]stepRow
	events map[string][]eventRow
	// names maps a fixture name to its flow id.
	names map[string]string
	// bad are the rows the import must skip, by id.
	bad map[string]string
}

func strp(s string) *string { return &s }

// buildFixture writes a database with flows in every status, timers due
// and not, external and manual waits, steps, a long event log and
// malformed rows.
func buildFixture(t testing.TB, now time.Time) *fixture {
	t.Helper()
	fx := &fixture{
		path: filepath.Join(t.TempDir(), "taskflow.db"), now: now,
		steps: map[string][]stepRow{}, events: map[string][]eventRow{},
		names: map[string]string{}, bad: map[string]string{},
	}
	db, err := sql.Open("sqlite", fx.path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(originalSchema); err != nil {
		t.Fatal(err)
	}
	created := now.Add(-72 * time.Hour).Add(123456789 * time.Nanosecond)
	add := func(name, status string, wait *string, cancel int64, nEvents int) *row {
		r := &row{
			id: uuid.NewString(), controller: "legacy/" + name, goal: "goal of " + name,
			owner: "agent:kate:session:" + name, origin: "user-1", step: "phase-" + name,
			state: `{"name":"` + name + `","n":1,"deep":{"list":[1,2,3]}}`, wait: wait, status: status,
			cancel: cancel, revision: int64(3 + len(fx.flows)), created: created,
			updated: created.Add(time.Duration(len(fx.flows)+1) * time.Minute),
		}
		fx.flows = append(fx.flows, r)
		fx.names[name] = r.id
		for i := 0; i < nEvents; i++ {
			kind := []string{"created", "started", "state_updated", "step_observed"}[min(i, 3)]
			fx.events[r.id] = append(fx.events[r.id], eventRow{flowID: r.id, kind: kind,
				payload: `{"seq":` + strconv.Itoa(i) + `,"name":"` + name + `"}`, at: created.Add(time.Duration(i) * time.Second)})
		}
		return r
	}
	timerAt := func(d time.Duration) *string {
		return strp(`{"kind":"timer","at":"` + chrono(now.Add(d)) + `"}`)
	}
	add("created", "created", nil, 0, 1)
	running := add("running", "running", nil, 0, 4)
	add("timer-due", "waiting", timerAt(-time.Minute), 0, 3)
	add("timer-later", "waiting", timerAt(time.Hour), 0, 3)
	ext := add("external", "waiting", strp(`{"kind":"external_event","topic":"mail.reply","correlation_id":"msg-42"}`), 0, 3)
	add("manual", "waiting", strp(`{"kind":"manual"}`), 0, 3)
	add("cancel-waiting", "waiting", strp(`{"kind":"manual"}`), 1, 4)
	add("finished", "finished", nil, 0, 5)
	add("failed", "failed", nil, 0, 5)
	add("cancelled", "cancelled", nil, 1, 5)
	add("long-log", "running", nil, 0, 1500)
	add("raw-state", "finished", nil, 0, 2).state = `[1,"two"]`
	// A wait left on a flow that is not waiting: imported without it.
	add("stale-wait", "failed", strp(`{"kind":"manual"}`), 0, 2)
	// Steps: managed and mirrored, with and without child and result.
	for i, r := range []*row{running, ext} {
		fx.steps[r.id] = []stepRow{
			{id: uuid.NewString(), flowID: r.id, runtime: "managed", runID: "run-" + strconv.Itoa(i) + "-z",
				task: "fetch", status: "succeeded", result: strp(`{"ok":true,"items":[1,2]}`), created: created, updated: created.Add(time.Second)},
			{id: uuid.NewString(), flowID: r.id, runtime: "mirrored", child: strp("agent:sub:session:" + strconv.Itoa(i)),
				runID: "run-" + strconv.Itoa(i) + "-a", task: "summarise", status: "running", created: created.Add(2 * time.Second), updated: created.Add(3 * time.Second)},
			{id: uuid.NewString(), flowID: r.id, runtime: "managed", runID: "run-" + strconv.Itoa(i) + "-m",
				task: "notify", status: "pending", created: created.Add(4 * time.Second), updated: created.Add(4 * time.Second)},
		}
	}
	// Malformed rows: each is skipped whole.
	add("bad-state", "running", nil, 0, 2).state = `{"broken":`
	fx.bad[fx.names["bad-state"]] = "state_json is not valid JSON"
	add("bad-status", "paused", nil, 0, 2)
	fx.bad[fx.names["bad-status"]] = `unknown status "paused"`
	add("bad-wait", "waiting", strp(`{"kind":"timer"`), 0, 2)
	fx.bad[fx.names["bad-wait"]] = "wait_json is not valid JSON"
	badStep := add("bad-step", "running", nil, 0, 2)
	fx.steps[badStep.id] = []stepRow{
		{id: uuid.NewString(), flowID: badStep.id, runtime: "managed", runID: "ok", task: "t", status: "succeeded", created: created, updated: created},
		{id: uuid.NewString(), flowID: badStep.id, runtime: "managed", runID: "r", task: "t", status: "succeeded", result: strp(`{nope`), created: created, updated: created},
	}
	fx.bad[badStep.id] = "result_json is not valid JSON"
	badEvent := add("bad-event", "finished", nil, 0, 2)
	fx.events[badEvent.id] = append(fx.events[badEvent.id], eventRow{flowID: badEvent.id, kind: "finished", payload: `not json`, at: created})
	fx.bad[badEvent.id] = "payload_json is not valid JSON"
	add("huge-state", "running", nil, 0, 1).state = `{"blob":"` + strings.Repeat("x", taskflow.DefaultLimits().StateBytes) + `"}`
	fx.bad[fx.names["huge-state"]] = "over the limit"
	add("no-owner", "created", nil, 0, 1).owner = ""
	fx.bad[fx.names["no-owner"]] = "owner_session_key is required"

	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range fx.flows {
		mustExec(t, tx, `INSERT INTO flows VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`, r.id, r.controller, r.goal, r.owner,
			r.origin, r.step, r.state, r.wait, r.status, r.cancel, r.revision, chrono(r.created), chrono(r.updated))
	}
	// Events of all flows interleaved, as the original's global ids are.
	var all []*eventRow
	for _, r := range fx.flows {
		for i := range fx.events[r.id] {
			all = append(all, &fx.events[r.id][i])
		}
	}
	sort.SliceStable(all, func(a, b int) bool { return all[a].at.Before(all[b].at) })
	for _, ev := range all {
		res, err := tx.Exec(`INSERT INTO flow_events (flow_id, kind, payload_json, at) VALUES (?,?,?,?)`,
			ev.flowID, ev.kind, ev.payload, chrono(ev.at))
		if err != nil {
			t.Fatal(err)
		}
		ev.id, _ = res.LastInsertId()
	}
	for _, r := range fx.flows {
		for _, s := range fx.steps[r.id] {
			mustExec(t, tx, `INSERT INTO flow_steps VALUES (?,?,?,?,?,?,?,?,?,?)`, s.id, s.flowID, s.runtime, s.child,
				s.runID, s.task, s.status, s.result, chrono(s.created), chrono(s.updated))
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return fx
}

func mustExec(t testing.TB, tx *sql.Tx, q string, args ...any) {
	t.Helper()
	if _, err := tx.Exec(q, args...); err != nil {
		t.Fatal(err)
	}
}

// good returns the rows the import must bring over.
func (fx *fixture) good() []*row {
	var out []*row
	for _, r := range fx.flows {
		if _, bad := fx.bad[r.id]; !bad {
			out = append(out, r)
		}
	}
	return out
}

// --- backends ---

// env is one test on one backend: a client, a fresh prefix, a store.
type env struct {
	t      testing.TB
	ctx    context.Context
	client redis.UniversalClient
	prefix string
	now    time.Time
	store  *taskflow.RedisStore
	m      *taskflow.Manager // on store, for its reads
}

func eachBackend(t *testing.T, fn func(t *testing.T, e *env)) {
	testbackend.Each(t, func(t *testing.T, b testbackend.Backend) {
		e := &env{t: t, ctx: context.Background(), client: b.Client(t), prefix: testbackend.Prefix("tfimport-test"),
			now: time.Now().UTC().Truncate(time.Millisecond)}
		testbackend.CleanupKeys(t, e.client, e.prefix)
		e.store = e.newStore()
		e.m = taskflow.NewManager(e.store)
		fn(t, e)
	})
}

func (e *env) newStore() *taskflow.RedisStore {
	s, err := taskflow.NewRedisStore(e.client, taskflow.WithPrefix(e.prefix), taskflow.WithClock(func() time.Time { return e.now }))
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// keys returns every key of the test's prefix, on every master, sorted.
func (e *env) keys() []string {
	keys, err := testbackend.Keys(e.ctx, e.client, e.prefix+":*")
	if err != nil {
		e.t.Fatal(err)
	}
	return keys
}

// dump renders every key of the prefix with its value, to show that a
// run changed nothing.
func (e *env) dump() map[string]string {
	out := map[string]string{}
	for _, k := range e.keys() {
		var v string
		switch e.client.Type(e.ctx, k).Val() {
		case "hash":
			m := e.client.HGetAll(e.ctx, k).Val()
			var parts []string
			for f, x := range m {
				parts = append(parts, f+"="+x)
			}
			sort.Strings(parts)
			v = strings.Join(parts, "\x1f")
		case "zset":
			for _, z := range e.client.ZRangeWithScores(e.ctx, k, 0, -1).Val() {
				v += fmt.Sprintf("%v@%v\x1f", z.Member, z.Score)
			}
		case "list":
			v = strings.Join(e.client.LRange(e.ctx, k, 0, -1).Val(), "\x1f")
		case "set":
			m := e.client.SMembers(e.ctx, k).Val()
			sort.Strings(m)
			v = strings.Join(m, "\x1f")
		case "stream":
			v = fmt.Sprint(e.client.XLen(e.ctx, k).Val())
		default:
			v = e.client.Type(e.ctx, k).Val()
		}
		out[k] = v
	}
	return out
}

func openFixture(t testing.TB, fx *fixture) *sql.DB {
	t.Helper()
	db, err := Open(context.Background(), fx.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// --- checks ---

func ms(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

// checkFlow compares the imported flow with its rows.
func checkFlow(t *testing.T, e *env, fx *fixture, r *row) {
	t.Helper()
	id := uuid.MustParse(r.id)
	f, err := e.m.Get(e.ctx, id)
	if err != nil {
		t.Fatalf("flow %s (%s): %v", r.id, r.controller, err)
	}
	if f.ControllerID != r.controller || f.Goal != r.goal || f.OwnerSessionKey != r.owner || f.RequesterOrigin != r.origin ||
		f.CurrentStep != r.step || string(f.Status) != r.status || f.CancelRequested != (r.cancel == 1) || f.Revision != r.revision ||
		!f.CreatedAt.Equal(ms(r.created)) || !f.UpdatedAt.Equal(ms(r.updated)) {
		t.Errorf("flow %s: got %+v, row %+v", r.controller, f, r)
	}
	if !jsonEqual(f.State, r.state) {
		t.Errorf("flow %s: state %s, row %s", r.controller, f.State, r.state)
	}
	rowWait := r.wait
	if r.status != "waiting" {
		rowWait = nil // dropped, with a note
	}
	switch {
	case rowWait == nil && f.Wait != nil:
		t.Errorf("flow %s: wait %s, row has none", r.controller, f.Wait)
	case rowWait != nil:
		got, err1 := taskflow.ParseWaitCondition(f.Wait)
		want, err2 := taskflow.ParseWaitCondition(json.RawMessage(*r.wait))
		if err1 != nil || err2 != nil || got.Kind != want.Kind || !got.At.Equal(want.At) || got.Topic != want.Topic || got.CorrelationID != want.CorrelationID {
			t.Errorf("flow %s: wait %s, row %s", r.controller, f.Wait, *r.wait)
		}
	}
	steps, err := e.m.ListSteps(e.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	wantSteps := fx.steps[r.id]
	if len(steps) != len(wantSteps) {
		t.Fatalf("flow %s: %d steps, %d rows", r.controller, len(steps), len(wantSteps))
	}
	for i, s := range wantSteps {
		g := steps[i]
		child, result := "", ""
		if s.child != nil {
			child = *s.child
		}
		if s.result != nil {
			result = *s.result
		}
		if g.ID.String() != s.id || g.FlowID != id || string(g.Runtime) != s.runtime || g.ChildSessionKey != child ||
			g.RunID != s.runID || g.Task != s.task || string(g.Status) != s.status || !jsonEqual(g.Result, result) ||
			!g.CreatedAt.Equal(ms(s.created)) || !g.UpdatedAt.Equal(ms(s.updated)) {
			t.Errorf("flow %s step %d: got %+v, row %+v", r.controller, i, g, s)
		}
	}
	events, err := e.m.ListEvents(e.ctx, id, 100000)
	if err != nil {
		t.Fatal(err)
	}
	rows := fx.events[r.id]
	keep := min(len(rows), taskflow.DefaultLimits().EventsPerFlow)
	if len(events) != keep {
		t.Fatalf("flow %s: %d events, want the newest %d of %d rows", r.controller, len(events), keep, len(rows))
	}
	for i, ev := range events { // newest first
		want := rows[len(rows)-1-i]
		if ev.ID != strconv.Itoa(len(rows)-i) || string(ev.Kind) != want.kind || !jsonEqual(ev.Payload, want.payload) ||
			!ev.At.Equal(ms(want.at)) || ev.Revision != r.revision {
			t.Fatalf("flow %s event %d: got %+v, row %+v", r.controller, i, ev, want)
		}
	}
}

func jsonEqual(got json.RawMessage, want string) bool {
	if len(got) == 0 || want == "" {
		return len(got) == 0 && want == ""
	}
	var a, b any
	if json.Unmarshal(got, &a) != nil || json.Unmarshal([]byte(want), &b) != nil {
		return false
	}
	return reflect.DeepEqual(a, b)
}

func wantClean(t *testing.T, e *env, flows int) {
	t.Helper()
	rep, err := e.m.Verify(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Flows != flows {
		t.Fatalf("verify: %d flows (want %d), problems %+v", rep.Flows, flows, rep.Problems)
	}
}

func wantSkipped(t *testing.T, fx *fixture, rep *Report) {
	t.Helper()
	got := map[string]string{}
	for _, r := range rep.Flows {
		if r.Outcome == Skipped {
			got[r.ID] = r.Reason
		}
	}
	if len(got) != len(fx.bad) {
		t.Errorf("skipped %v, want %v", got, fx.bad)
	}
	for id, want := range fx.bad {
		if !strings.Contains(got[id], want) {
			t.Errorf("row %s: reason %q, want %q", id, got[id], want)
		}
	}
}

// --- tests ---

func TestImport(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		fx := buildFixture(t, e.now)
		db := openFixture(t, fx)
		good := fx.good()

		// A dry run reports and writes nothing.
		rep, err := Import(e.ctx, db, e.store, Options{DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.DryRun || rep.Rows != len(fx.flows) || rep.Imported != len(good) || rep.Skipped != len(fx.bad) {
			t.Fatalf("dry run: %+v", rep)
		}
		wantSkipped(t, fx, rep)
		for _, k := range e.keys() {
			if !strings.HasSuffix(k, ":{meta}:layout") {
				t.Fatalf("the dry run wrote %s", k)
			}
		}

		rep, err = Import(e.ctx, db, e.store, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Rows != len(fx.flows) || rep.Imported != len(good) || rep.Skipped != len(fx.bad) || rep.Unchanged != 0 {
			t.Fatalf("import: %+v", rep)
		}
		wantSkipped(t, fx, rep)
		for _, r := range good {
			checkFlow(t, e, fx, r)
		}
		noted := false
		for _, r := range rep.Flows {
			if r.ID == fx.names["stale-wait"] && r.Outcome == Imported && len(r.Notes) == 1 && strings.Contains(r.Notes[0], "wait_json of a failed flow dropped") {
				noted = true
			}
		}
		if !noted {
			t.Errorf("no note for the dropped wait: %+v", rep.Flows)
		}
		for id := range fx.bad {
			if _, err := e.m.Get(e.ctx, uuid.MustParse(id)); !errors.Is(err, taskflow.ErrNotFound) {
				t.Errorf("skipped row %s was written: %v", id, err)
			}
			if steps, _ := e.m.ListSteps(e.ctx, uuid.MustParse(id)); len(steps) != 0 {
				t.Errorf("skipped row %s has steps", id)
			}
		}
		wantClean(t, e, len(good))

		// A second run changes nothing and says so.
		before := e.dump()
		rep, err = Import(e.ctx, db, e.store, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Imported != 0 || rep.Unchanged != len(good) || rep.Skipped != len(fx.bad) || rep.Conflicts != 0 {
			t.Fatalf("second import: %+v", rep)
		}
		if after := e.dump(); !reflect.DeepEqual(before, after) {
			t.Fatal("the second import changed the flow space")
		}

		// The engine takes over: the due timer resumes, the one not due
		// waits, the cancel-requested wait is cancelled, and a published
		// event resumes the external wait through the resume bridge.
		m := taskflow.NewManager(e.store)
		t.Cleanup(func() { _ = m.Close() })
		eng := taskflow.NewWaitEngine(m, taskflow.WithBridgeBlock(50*time.Millisecond))
		tick := eng.TickAt(e.ctx, e.now)
		if tick.Resumed != 1 || tick.Cancelled != 1 || tick.Errors != 0 {
			t.Fatalf("tick: %+v", tick)
		}
		status := func(name string) taskflow.FlowStatus {
			f, err := m.Get(e.ctx, uuid.MustParse(fx.names[name]))
			if err != nil {
				t.Fatal(err)
			}
			return f.Status
		}
		if status("timer-due") != taskflow.StatusRunning || status("timer-later") != taskflow.StatusWaiting ||
			status("cancel-waiting") != taskflow.StatusCancelled || status("manual") != taskflow.StatusWaiting {
			t.Fatalf("after the tick: due %s, later %s, cancel %s, manual %s",
				status("timer-due"), status("timer-later"), status("cancel-waiting"), status("manual"))
		}
		if tick := eng.TickAt(e.ctx, e.now.Add(2*time.Hour)); tick.Resumed != 1 {
			t.Fatalf("later tick: %+v", tick)
		}
		ctx, cancel := context.WithCancel(e.ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = eng.RunResumeBridge(ctx) }()
		defer func() { cancel(); <-done }()
		if err := m.PublishResume(e.ctx, taskflow.ResumeRequest{FlowID: uuid.MustParse(fx.names["external"]),
			Topic: "mail.reply", CorrelationID: "msg-42", Payload: map[string]string{"body": "yes"}}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for status("external") != taskflow.StatusRunning {
			if time.Now().After(deadline) {
				t.Fatal("the published event did not resume the imported external wait")
			}
			time.Sleep(20 * time.Millisecond)
		}
		// Workers claim the imported running flows.
		f, lease, err := m.Claim(e.ctx, "legacy/running", "w1", time.Minute, taskflow.WithClaimWait(0))
		if err != nil || f == nil || lease == nil || f.ID.String() != fx.names["running"] {
			t.Fatalf("claim: %v %v", f, err)
		}
		cancel()
		<-done
		wantClean(t, e, len(good))
	})
}

// TestImportInterrupted stops an import part way and runs it again: the
// second run brings the rest, and every flow is whole.
func TestImportInterrupted(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		fx := buildFixture(t, e.now)
		db := openFixture(t, fx)
		ctx, cancel := context.WithCancel(e.ctx)
		seen := 0
		_, err := Import(ctx, db, e.store, Options{Progress: func(FlowResult) {
			seen++
			if seen == 4 {
				cancel()
			}
		}})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("interrupted import: %v", err)
		}
		wantClean(t, e, 4) // the first four rows are good ones, whole
		rep, err := Import(e.ctx, db, e.store, Options{})
		if err != nil {
			t.Fatal(err)
		}
		good := fx.good()
		if rep.Unchanged != 4 || rep.Imported != len(good)-4 || rep.Skipped != len(fx.bad) {
			t.Fatalf("re-run: %+v", rep)
		}
		for _, r := range good {
			checkFlow(t, e, fx, r)
		}
		wantClean(t, e, len(good))
	})
}

// TestImportConflict: a flow that moved on since it was imported is
// reported and left as it is.
func TestImportConflict(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		fx := buildFixture(t, e.now)
		db := openFixture(t, fx)
		if _, err := Import(e.ctx, db, e.store, Options{}); err != nil {
			t.Fatal(err)
		}
		m := taskflow.NewManager(e.store)
		id := uuid.MustParse(fx.names["created"])
		moved, err := m.StartRunning(e.ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := Import(e.ctx, db, e.store, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Conflicts != 1 || rep.Imported != 0 {
			t.Fatalf("re-import: %+v", rep)
		}
		var c FlowResult
		for _, r := range rep.Flows {
			if r.Outcome == Conflict {
				c = r
			}
		}
		if c.ID != id.String() || !strings.Contains(c.Reason, "running at revision") {
			t.Fatalf("conflict: %+v", c)
		}
		if f, _ := m.Get(e.ctx, id); f.Revision != moved.Revision || f.Status != taskflow.StatusRunning {
			t.Fatalf("the conflicting flow was changed: %+v", f)
		}
	})
}

func TestOpenOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir?#%")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	fx := buildFixture(t, time.Now())
	data, err := os.ReadFile(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "my db?.sqlite")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("opening %q: %v", path, err)
	}
	defer db.Close()
	ids, err := flowIDs(context.Background(), db)
	if err != nil || len(ids) != len(fx.flows) {
		t.Fatalf("%d ids, %v", len(ids), err)
	}
}

func TestOpenRefusesOtherFiles(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, filepath.Join(t.TempDir(), "missing.db")); err == nil {
		t.Fatal("a missing file opened")
	}
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE notes (id INTEGER)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(ctx, path); !errors.Is(err, ErrNotOriginal) {
		t.Fatalf("another database: %v", err)
	}
	text := filepath.Join(t.TempDir(), "text.db")
	if err := os.WriteFile(text, []byte("hello, not a database at all, just some text"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, text); err == nil {
		t.Fatal("a text file opened")
	}
}

// TestImportRefusesRowsOverTheLimits: a row over the store's limits (a
// 10 MiB goal, a controller id over 1 KiB, bytes that are not UTF-8, an
// event kind or step task over its bound, a revision Lua cannot count
// to) is skipped with a reason naming the field, and the other rows are
// imported; a long audit log is cut to the store's byte bound as the
// store keeps it.
func TestImportRefusesRowsOverTheLimits(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		path := filepath.Join(t.TempDir(), "limits.db")
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(originalSchema); err != nil {
			t.Fatal(err)
		}
		at := chrono(e.now.Add(-time.Hour))
		want := map[string]string{} // id -> reason, "" for imported
		flow := func(reason, controller, goal string, revision int64) string {
			id := uuid.NewString()
			if _, err := db.Exec(`INSERT INTO flows VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`, id, controller, goal,
				"agent:k:session:1", "user", "step", `{}`, nil, "finished", 0, revision, at, at); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(`INSERT INTO flow_events (flow_id, kind, payload_json, at) VALUES (?,?,?,?)`, id, "created", `{}`, at); err != nil {
				t.Fatal(err)
			}
			want[id] = reason
			return id
		}
		flow("goal is 10485760 bytes, over the limit of 65536", "c", strings.Repeat("g", 10<<20), 1)
		flow("controller_id is 1048576 bytes, over the limit of 1024", strings.Repeat("c", 1<<20), "g", 1)
		flow("goal is not valid UTF-8", "c", "bad \xff goal", 1)
		flow("revision 100000000000000 is over 99999999999999", "c", "g", 100_000_000_000_000)
		kind := flow("event 2: event kind is 4194304 bytes, over the limit of 1024", "c", "g", 1)
		if _, err := db.Exec(`INSERT INTO flow_events (flow_id, kind, payload_json, at) VALUES (?,?,?,?)`, kind, strings.Repeat("k", 4<<20), `{}`, at); err != nil {
			t.Fatal(err)
		}
		task := flow("task is 8388608 bytes, over the limit of 65536", "c", "g", 1)
		if _, err := db.Exec(`INSERT INTO flow_steps VALUES (?,?,?,?,?,?,?,?,?,?)`, uuid.NewString(), task, "managed", nil,
			"r1", strings.Repeat("t", 8<<20), "running", nil, at, at); err != nil {
			t.Fatal(err)
		}
		// An id that is no UUID, of 1 MiB: the reason quotes its start.
		badID := strings.Repeat("i", 1<<20)
		if _, err := db.Exec(`INSERT INTO flows VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`, badID, "c", "g",
			"agent:k:session:1", "user", "step", `{}`, nil, "finished", 0, 1, at, at); err != nil {
			t.Fatal(err)
		}
		want[badID] = `id "iiii`
		good := flow("", "c", "a good flow", 1)
		// 40 events of 100 KiB: 4 MiB of log, more than the store's
		// 1 MiB; imported with the newest that fit.
		long := flow("", "c", "a long log", 3)
		for i := 0; i < 40; i++ {
			if _, err := db.Exec(`INSERT INTO flow_events (flow_id, kind, payload_json, at) VALUES (?,?,?,?)`, long, "state_updated",
				`{"pad":"`+strings.Repeat("p", 100<<10)+`"}`, at); err != nil {
				t.Fatal(err)
			}
		}
		db.Close()
		src := openFixture(t, &fixture{path: path})
		rep, err := Import(e.ctx, src, e.store, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Rows != len(want) || rep.Imported != 2 || rep.Skipped != len(want)-2 {
			t.Fatalf("report %+v", rep)
		}
		for _, r := range rep.Flows {
			if r.Outcome != Skipped || want[r.ID] == "" || !strings.Contains(r.Reason, want[r.ID]) {
				t.Errorf("row %s: %s %q, want skipped: %q", r.ID, r.Outcome, r.Reason, want[r.ID])
			}
			if len(r.Reason) > 300 {
				t.Errorf("row %s: a reason of %d bytes", r.ID, len(r.Reason))
			}
		}
		for id, reason := range want {
			if id == badID {
				continue
			}
			_, err := e.m.Get(e.ctx, uuid.MustParse(id))
			if (reason == "") != (err == nil) {
				t.Errorf("row %s (%q): Get says %v", id, reason, err)
			}
		}
		evs, err := e.m.ListEvents(e.ctx, uuid.MustParse(long), 1000)
		if err != nil || len(evs) == 0 || len(evs) >= 41 || evs[0].ID != "41" {
			t.Fatalf("the long log: %d events, %v", len(evs), err)
		}
		size := 0
		for _, x := range e.client.LRange(e.ctx, e.prefixKeyOf(t, "events", long), 0, -1).Val() {
			size += len(x)
		}
		if size > taskflow.DefaultLimits().EventBytes {
			t.Fatalf("the long log holds %d bytes, over %d", size, taskflow.DefaultLimits().EventBytes)
		}
		if _, err := e.m.Get(e.ctx, uuid.MustParse(good)); err != nil {
			t.Fatal(err)
		}
		wantClean(t, e, 2)
	})
}

// prefixKeyOf finds the one key of the prefix named '<kind>:<id>'.
func (e *env) prefixKeyOf(t *testing.T, kind, id string) string {
	t.Helper()
	for _, k := range e.keys() {
		if strings.HasSuffix(k, ":"+kind+":"+id) {
			return k
		}
	}
	t.Fatalf("no %s key of %s", kind, id)
	return ""
}
