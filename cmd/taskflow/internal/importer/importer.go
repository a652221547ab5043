// Package importer brings the flows of the original nexo-taskflow (its
// SQLite database: the flows, flow_steps and flow_events tables) into a
// taskflow flow space in Redis.
//
// Every flow lands with its id, status, revision, created and updated
// times, wait, state, cancel flag, steps and audit log (events in the
// original's order), in one store call per flow (taskflow's
// RedisStore.InsertFlow), so each flow is written whole or not at all and
// an interrupted import is completed by running it again. The indexes
// follow: a flow waiting on a timer resumes when it is due, one waiting
// for an external event resumes when the event is published, a running
// flow is ready for a worker to claim.
//
// A flow already in the flow space is left as it is (a second import
// changes nothing and says so); a row that cannot be imported (JSON that
// does not parse, an unknown status, a bad id or time, a bad step or
// event of the flow, a string over the store's limits or not valid UTF-8,
// two steps with one id, a revision over the largest a flow holds, 10^14-1) is
// reported with its id and the reason and skipped, nothing of that flow
// is written, and the import goes on with the next row.
//
// What changes on the way: times are kept to the millisecond (the
// original keeps nanoseconds); event ids become the flow's own sequence
// 1..n in the original's order (the original's ids are global); every
// imported event carries the flow's revision (the original's events do
// not record one); only the newest events up to the store's event cap
// and byte bound (taskflow.Limits.EventBytes) are kept, as the store
// keeps them; a wait is stored in taskflow's canonical
// form (a timer's time in UTC).
package importer

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	// The pure-Go SQLite driver (no cgo), registered as "sqlite".
	_ "modernc.org/sqlite"

	"github.com/taskflow-dev/taskflow"
)

// Outcome says what the import did (or, in a dry run, would do) with one
// flow row.
type Outcome string

// The outcomes of a flow row.
const (
	// Imported: the flow was written (a dry run: it would be).
	Imported Outcome = "imported"
	// Unchanged: a flow with the id, status and revision is already in
	// the flow space; nothing was written.
	Unchanged Outcome = "unchanged"
	// Conflict: a flow with the id is in the flow space with another
	// status or revision (it moved on since it was imported, or it is
	// another flow); it was left as it is.
	Conflict Outcome = "conflict"
	// Skipped: the row cannot be imported; nothing of the flow was
	// written.
	Skipped Outcome = "skipped"
)

// FlowResult is what happened to one flow row.
type FlowResult struct {
	// ID is the row's id as stored in the database.
	ID      string  `json:"id"`
	Outcome Outcome `json:"outcome"`
	Status  string  `json:"status,omitempty"`
	Steps   int     `json:"steps"`
	Events  int     `json:"events"`
	// Reason says why a row was skipped or conflicts.
	Reason string `json:"reason,omitempty"`
	// Notes list what was adapted on the way (e.g. a wait dropped from a
	// flow that is not waiting).
	Notes []string `json:"notes,omitempty"`
}

// Report sums up an import.
type Report struct {
	DryRun    bool `json:"dry_run"`
	Rows      int  `json:"rows"`
	Imported  int  `json:"imported"`
	Unchanged int  `json:"unchanged"`
	Conflicts int  `json:"conflicts"`
	Skipped   int  `json:"skipped"`
	// Flows lists the rows that were not plainly imported or unchanged
	// (skipped, conflicting, or imported with notes), in database order.
	Flows []FlowResult `json:"flows"`
}

// Options adjust an import.
type Options struct {
	// DryRun reads and checks everything and writes nothing; the report
	// says what a real run would do.
	DryRun bool
	// Progress, when not nil, is called after each flow row.
	Progress func(FlowResult)
}

// ErrNotOriginal: the database has no table of the original's schema.
var ErrNotOriginal = errors.New("not a nexo-taskflow database")

// Open opens the original's SQLite database at path, read-only.
func Open(ctx context.Context, path string) (*sql.DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("opening the database: %w", err)
	}
	// A URI, so the file is opened read-only; its special characters
	// are escaped.
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	db, err := sql.Open("sqlite", "file:"+esc+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	var n int
	err = db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master
		WHERE type = 'table' AND name IN ('flows', 'flow_steps', 'flow_events')`).Scan(&n)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if n != 3 {
		db.Close()
		return nil, fmt.Errorf("%w: %s lacks the flows, flow_steps and flow_events tables", ErrNotOriginal, path)
	}
	return db, nil
}

// Import reads every flow of db and writes it to store (see the package
// doc). It returns an error only when it cannot go on (the database or
// Redis fails, ctx ends); rows it cannot import are in the report. It
// can be run again at any time: flows already imported are left alone.
func Import(ctx context.Context, db *sql.DB, store *taskflow.RedisStore, opts Options) (*Report, error) {
	rep := &Report{DryRun: opts.DryRun, Flows: []FlowResult{}}
	// Read the ids first: one query per flow then reads that flow whole,
	// and no cursor stays open while Redis is written.
	ids, err := flowIDs(ctx, db)
	if err != nil {
		return rep, err
	}
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		res, err := importOne(ctx, db, store, id, opts.DryRun)
		if err != nil {
			return rep, err
		}
		rep.Rows++
		switch res.Outcome {
		case Imported:
			rep.Imported++
		case Unchanged:
			rep.Unchanged++
		case Conflict:
			rep.Conflicts++
		case Skipped:
			rep.Skipped++
		}
		if res.Outcome == Skipped || res.Outcome == Conflict || len(res.Notes) > 0 {
			rep.Flows = append(rep.Flows, res)
		}
		if opts.Progress != nil {
			opts.Progress(res)
		}
	}
	return rep, nil
}

func flowIDs(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT id FROM flows ORDER BY rowid`)
	if err != nil {
		return nil, fmt.Errorf("reading flows: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("reading flows: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading flows: %w", err)
	}
	return ids, nil
}

// rowError is a row that cannot be imported: its flow is skipped.
type rowError struct{ msg string }

func (e *rowError) Error() string { return e.msg }

func badRow(format string, a ...any) error { return &rowError{msg: fmt.Sprintf(format, a...)} }

// quote quotes a value of a row for a reason, cut to its first 64 bytes
// (a reason stays one readable line however large the value).
func quote(s string) string {
	if len(s) <= 64 {
		return strconv.Quote(s)
	}
	n := 64
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(s[:n]), len(s))
}

// importOne reads one flow with its steps and events and writes it.
func importOne(ctx context.Context, db *sql.DB, store *taskflow.RedisStore, rawID string, dryRun bool) (FlowResult, error) {
	res := FlowResult{ID: rawID}
	skip := func(err error) (FlowResult, error) {
		res.Outcome, res.Reason = Skipped, reason(err)
		return res, nil
	}
	f, notes, err := readFlow(ctx, db, rawID)
	var re *rowError
	if errors.As(err, &re) {
		return skip(err)
	}
	if err != nil {
		return res, err
	}
	res.Status, res.Notes = string(f.Status), notes
	steps, err := readSteps(ctx, db, rawID, f.ID)
	if errors.As(err, &re) {
		return skip(err)
	}
	if err != nil {
		return res, err
	}
	events, err := readEvents(ctx, db, rawID)
	if errors.As(err, &re) {
		return skip(err)
	}
	if err != nil {
		return res, err
	}
	res.Steps, res.Events = len(steps), len(events)

	have, err := taskflow.NewManager(store).Get(ctx, f.ID)
	switch {
	case err == nil:
		return existing(res, f, have), nil
	case !errors.Is(err, taskflow.ErrNotFound):
		return res, fmt.Errorf("flow %s: %w", f.ID, err)
	}
	if dryRun {
		// Every check of InsertFlow but the id's, without writing.
		if err := store.CheckInsert(taskflow.Import{Flow: f, Steps: steps, Events: events}); err != nil {
			return skip(err)
		}
		res.Outcome = Imported
		return res, nil
	}
	_, err = store.InsertFlow(ctx, taskflow.Import{Flow: f, Steps: steps, Events: events})
	switch {
	case err == nil:
		res.Outcome = Imported
	case errors.Is(err, taskflow.ErrAlreadyExists):
		// Written by a concurrent import since we looked.
		have, gerr := taskflow.NewManager(store).Get(ctx, f.ID)
		if gerr != nil {
			return res, fmt.Errorf("flow %s: %w", f.ID, gerr)
		}
		return existing(res, f, have), nil
	case errors.Is(err, taskflow.ErrInvalidData), errors.Is(err, taskflow.ErrDuplicateStep):
		return skip(err)
	default:
		return res, fmt.Errorf("flow %s: %w", f.ID, err)
	}
	return res, nil
}

// reason is an error as a person reads it in the report: without the
// library's "taskflow: " and "invalid data: " prefixes.
func reason(err error) string {
	msg := err.Error()
	for _, p := range []string{"taskflow: ", "invalid data: "} {
		msg = strings.ReplaceAll(msg, ": "+p, ": ")
		msg = strings.TrimPrefix(msg, p)
	}
	return strings.TrimPrefix(msg, "invalid data: ")
}

// existing classifies a flow row whose id is already in the flow space.
func existing(res FlowResult, f, have *taskflow.Flow) FlowResult {
	if have.Status == f.Status && have.Revision == f.Revision {
		res.Outcome = Unchanged
		return res
	}
	res.Outcome = Conflict
	res.Reason = fmt.Sprintf("already in the flow space as %s at revision %d (the row is %s at revision %d); left as it is",
		have.Status, have.Revision, f.Status, f.Revision)
	return res
}

// readFlow reads and checks one flows row.
func readFlow(ctx context.Context, db *sql.DB, rawID string) (*taskflow.Flow, []string, error) {
	var (
		controller, goal, owner, origin, step, stateJSON, status, created, updated string
		waitJSON                                                                   sql.NullString
		cancel, revision                                                           int64
	)
	err := db.QueryRowContext(ctx, `SELECT controller_id, goal, owner_session_key, requester_origin,
		current_step, state_json, wait_json, status, cancel_requested, revision, created_at, updated_at
		FROM flows WHERE id = ?`, rawID).Scan(&controller, &goal, &owner, &origin, &step, &stateJSON,
		&waitJSON, &status, &cancel, &revision, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, badRow("the row disappeared during the import")
	}
	if err != nil {
		// A value of the wrong type (e.g. text in revision) is the row's
		// fault; a failing database is not.
		if strings.HasPrefix(err.Error(), "sql: Scan error") {
			return nil, nil, badRow("unreadable row: %v", err)
		}
		return nil, nil, fmt.Errorf("reading flow %s: %w", rawID, err)
	}
	id, err := parseID(rawID)
	if err != nil {
		return nil, nil, err
	}
	st, err := taskflow.ParseFlowStatus(status)
	if err != nil {
		return nil, nil, badRow("unknown status %s", quote(status))
	}
	if !json.Valid([]byte(stateJSON)) {
		return nil, nil, badRow("state_json is not valid JSON")
	}
	if cancel != 0 && cancel != 1 {
		return nil, nil, badRow("cancel_requested is %d, not 0 or 1", cancel)
	}
	if revision < 0 {
		return nil, nil, badRow("revision %d is negative", revision)
	}
	f := &taskflow.Flow{
		ID: id, ControllerID: controller, Goal: goal, OwnerSessionKey: owner, RequesterOrigin: origin,
		CurrentStep: step, State: json.RawMessage(stateJSON), Status: st, CancelRequested: cancel == 1,
		Revision: revision,
	}
	if f.CreatedAt, err = parseTime("created_at", created); err != nil {
		return nil, nil, err
	}
	if f.UpdatedAt, err = parseTime("updated_at", updated); err != nil {
		return nil, nil, err
	}
	var notes []string
	if waitJSON.Valid {
		if !json.Valid([]byte(waitJSON.String)) {
			return nil, nil, badRow("wait_json is not valid JSON")
		}
		if st == taskflow.StatusWaiting {
			if _, err := taskflow.ParseWaitCondition(json.RawMessage(waitJSON.String)); err != nil {
				return nil, nil, badRow("wait_json: %s", strings.TrimPrefix(err.Error(), "taskflow: invalid data: "))
			}
			f.Wait = json.RawMessage(waitJSON.String)
		} else if strings.TrimSpace(waitJSON.String) != "null" {
			notes = append(notes, fmt.Sprintf("wait_json of a %s flow dropped (only a waiting flow keeps a wait)", st))
		}
	}
	if st == taskflow.StatusWaiting && f.Wait == nil {
		return nil, nil, badRow("waiting flow without wait_json")
	}
	return f, notes, nil
}

// readSteps reads a flow's steps in the order they were inserted.
func readSteps(ctx context.Context, db *sql.DB, rawID string, flowID uuid.UUID) ([]*taskflow.FlowStep, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, runtime, child_session_key, run_id, task, status,
		result_json, created_at, updated_at FROM flow_steps WHERE flow_id = ? ORDER BY rowid`, rawID)
	if err != nil {
		return nil, fmt.Errorf("reading the steps of %s: %w", rawID, err)
	}
	defer rows.Close()
	var out []*taskflow.FlowStep
	for rows.Next() {
		var (
			sid, runtime, runID, task, status, created, updated string
			child, result                                       sql.NullString
		)
		if err := rows.Scan(&sid, &runtime, &child, &runID, &task, &status, &result, &created, &updated); err != nil {
			return nil, badRow("unreadable step: %v", err)
		}
		id, err := uuid.Parse(sid)
		if err != nil {
			return nil, badRow("step id %s is not a UUID", quote(sid))
		}
		st := &taskflow.FlowStep{
			ID: id, FlowID: flowID, Runtime: taskflow.StepRuntime(runtime), ChildSessionKey: child.String,
			RunID: runID, Task: task, Status: taskflow.StepStatus(status),
		}
		switch {
		case !st.Runtime.Valid():
			return nil, badRow("step %s: unknown runtime %s", sid, quote(runtime))
		case !st.Status.Valid():
			return nil, badRow("step %s: unknown status %s", sid, quote(status))
		case runID == "":
			return nil, badRow("step %s: empty run_id", sid)
		}
		if result.Valid {
			if !json.Valid([]byte(result.String)) {
				return nil, badRow("step %s: result_json is not valid JSON", sid)
			}
			st.Result = json.RawMessage(result.String)
		}
		if st.CreatedAt, err = parseTime("step "+sid+" created_at", created); err != nil {
			return nil, err
		}
		if st.UpdatedAt, err = parseTime("step "+sid+" updated_at", updated); err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the steps of %s: %w", rawID, err)
	}
	return out, nil
}

// readEvents reads a flow's audit log, oldest first.
func readEvents(ctx context.Context, db *sql.DB, rawID string) ([]*taskflow.FlowEvent, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, kind, payload_json, at FROM flow_events
		WHERE flow_id = ? ORDER BY id`, rawID)
	if err != nil {
		return nil, fmt.Errorf("reading the events of %s: %w", rawID, err)
	}
	defer rows.Close()
	var out []*taskflow.FlowEvent
	for rows.Next() {
		var (
			id                int64
			kind, payload, at string
		)
		if err := rows.Scan(&id, &kind, &payload, &at); err != nil {
			return nil, badRow("unreadable event: %v", err)
		}
		if strings.TrimSpace(kind) == "" {
			return nil, badRow("event %d: empty kind", id)
		}
		if !json.Valid([]byte(payload)) {
			return nil, badRow("event %d: payload_json is not valid JSON", id)
		}
		t, err := parseTime(fmt.Sprintf("event %d at", id), at)
		if err != nil {
			return nil, err
		}
		out = append(out, &taskflow.FlowEvent{Kind: taskflow.EventKind(kind), Payload: json.RawMessage(payload), At: t})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the events of %s: %w", rawID, err)
	}
	return out, nil
}

// parseID reads a flow id: the original writes hyphenated lowercase
// UUIDs.
func parseID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil || id == uuid.Nil {
		return uuid.Nil, badRow("id %s is not a UUID", quote(s))
	}
	return id, nil
}

// parseTime reads an RFC 3339 time as chrono writes it.
func parseTime(what, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, badRow("%s %s is not an RFC 3339 time", what, quote(s))
	}
	return t, nil
}
