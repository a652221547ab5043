package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// The store calls of this file are the ones an importer or an operator
// tool needs beside the Manager's state machine: insert a whole flow as
// another store kept it, append an event with its own time, and read or
// overwrite one step. Each is one script that keeps every index in step
// with the records it writes, so Verify stays clean after any mix of them.

// Import is what InsertFlow writes: a flow as it stands, with its steps
// and its audit log (an importer's input).
type Import struct {
	// Flow is the flow record, stored as given (see InsertFlow).
	Flow *Flow
	// Steps are the flow's steps, in the order given (ListSteps returns
	// them in that order). Each step's RunID must be unique within the
	// flow; a zero ID is filled in; a zero FlowID means the flow's; zero
	// timestamps are the flow's CreatedAt. At most 1000 steps (and
	// Limits.StepsPerFlow).
	Steps []*FlowStep
	// Events is the flow's audit log, oldest first: each event's Kind,
	// Payload (nil is {}) and At (zero is the flow's UpdatedAt) are kept;
	// ID and Revision are assigned (ids 1..n in the order given; every
	// event carries the flow's revision, since the log the events came
	// from may not say which revision each one made). Only the newest
	// events up to Limits.EventsPerFlow are written, as if they had been
	// appended one by one; at most 10,000 events. None: InsertFlow writes
	// one event of kind EventImported at the flow's UpdatedAt.
	Events []*FlowEvent
}

// InsertFlow stores imp.Flow as given (an importer's call): its ID,
// status, revision, CreatedAt and UpdatedAt, wait, state, cancel flag,
// search attributes and the other record fields, with imp.Steps and
// imp.Events, all in one script: either all of it is written or nothing. Without events it
// writes one event of kind EventImported at UpdatedAt. A flow whose ID is
// already stored is refused with ErrAlreadyExists.
//
// Every index follows the record: the status index (scored by
// UpdatedAt), the owner's, the controller's and each attribute's (by
// CreatedAt), a waiting flow's timer or
// correlation entry and the cancel set, and a running flow's ready queue
// (it arrives unleased, ready to claim). The state machine is not
// checked: any status with any revision is accepted. Times are kept to
// the millisecond, as every time of the store. The events are not
// announced on the watch channel (a running flow is announced on its
// ready queue, so waiting workers claim it).
//
// Refused with ErrInvalidData, writing nothing: a nil flow or ID, an unknown
// status, an empty OwnerSessionKey, a negative revision or one over
// 10^14-1 (the most a flow counts to), a zero CreatedAt or UpdatedAt, a
// waiting flow without a valid wait or another flow with one, state or payloads that are not
// JSON or over the state size limit, a string over the store's Limits
// (LabelBytes, TextBytes; a wait's topic and correlation id and an event
// kind are labels) or not valid UTF-8, an invalid step, a run id or step
// id given twice, more steps than 1000 or Limits.StepsPerFlow,
// too many events, search attributes that CreateManagedInput.Attributes
// refuses. The audit log is cut to Limits.EventBytes as the
// store keeps it (the oldest go; the newest is always kept).
func (s *RedisStore) InsertFlow(ctx context.Context, imp Import) (*Flow, error) {
	keys, args, err := s.prepareInsert(imp)
	if err != nil {
		return nil, err
	}
	f := imp.Flow
	// Like a create, an insert may be the flow space's first write.
	if err := s.recordLayout(ctx); err != nil {
		return nil, err
	}
	nf, _, err := s.runFlowScript(ctx, s.scripts.insertFlow, f.ID, keys, args)
	if err != nil {
		return nf, fmt.Errorf("taskflow: insert flow: %w", err) // nf: nil unless applied
	}
	return nf, nil
}

// CheckInsert makes every check InsertFlow makes before it writes, and
// writes nothing: a dry run. It returns the error InsertFlow would return
// for imp, except ErrAlreadyExists (it does not read Redis).
func (s *RedisStore) CheckInsert(imp Import) error {
	_, _, err := s.prepareInsert(imp)
	return err
}

// prepareInsert checks an InsertFlow and renders its keys and arguments.
func (s *RedisStore) prepareInsert(imp Import) ([]string, []any, error) {
	f := imp.Flow
	if err := s.checkInsertable(f); err != nil {
		return nil, nil, err
	}
	var wait waitArgs
	if f.Status == StatusWaiting {
		w, err := waitIndexArgs(f.ID, f.Wait)
		if err == nil {
			err = s.checkWaitLabels(w)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("flow %s: %w", f.ID, err)
		}
		wait = w
	}
	state, err := toJSON("state", f.State)
	if err != nil {
		return nil, nil, err
	}
	if state == nil {
		state = json.RawMessage(`{}`)
	}
	stateArgs, err := s.stateArgs("state", state, false)
	if err != nil {
		return nil, nil, err
	}
	stepArgs, runIDs, err := s.insertStepArgs(f, imp.Steps)
	if err != nil {
		return nil, nil, err
	}
	eventArgs, kept, newest, err := s.insertEventArgs(f, imp.Events)
	if err != nil {
		return nil, nil, err
	}
	attrs, err := attrArgs(f.Attributes)
	if err != nil {
		return nil, nil, fmt.Errorf("flow %s: %w", f.ID, err)
	}
	cancel := ""
	if f.CancelRequested {
		cancel = "1"
	}
	updated := f.UpdatedAt.UTC().Truncate(time.Millisecond)
	args := s.head(f.ID, strconv.FormatInt(updated.UnixMilli(), 10), mutation{})
	args = append(args,
		string(f.Status), f.ControllerID, f.Goal, f.OwnerSessionKey, f.RequesterOrigin, f.CurrentStep,
		cancel, strconv.FormatInt(f.Revision, 10), strconv.FormatInt(f.CreatedAt.UnixMilli(), 10),
		wait.json, wait.timerMs, wait.corr, len(runIDs), kept, newest)
	args = append(args, attrs...)
	args = append(args, stepArgs...)
	args = append(args, eventArgs...)
	args = append(args, stateArgs...)
	keys := s.keys.flowKeys(f.ID, f.OwnerSessionKey)
	for _, r := range runIDs {
		keys = append(keys, s.keys.step(f.ID, r))
	}
	return keys, args, nil
}

// checkInsertable checks a flow record for InsertFlow.
func (s *RedisStore) checkInsertable(f *Flow) error {
	if f == nil {
		return fmt.Errorf("%w: nil flow", ErrInvalidData)
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: flow %s: %s", ErrInvalidData, f.ID, fmt.Sprintf(format, a...))
	}
	switch {
	case f.ID == uuid.Nil:
		return fmt.Errorf("%w: a flow to insert needs an id", ErrInvalidData)
	case !f.Status.Valid():
		return bad("unknown flow status %q", f.Status)
	case strings.TrimSpace(f.OwnerSessionKey) == "":
		return bad("owner_session_key is required")
	case f.Revision < 0:
		return bad("revision %d is negative", f.Revision)
	case f.Revision > maxRevision:
		return bad("revision %d is over %d, the most a flow counts to", f.Revision, maxRevision)
	case f.CreatedAt.IsZero() || f.UpdatedAt.IsZero():
		return bad("created_at and updated_at are required")
	case f.Status != StatusWaiting && f.Wait != nil:
		return bad("a %s flow cannot have a wait (only a waiting one has)", f.Status)
	case f.Status == StatusWaiting && f.Wait == nil:
		return bad("a waiting flow needs a wait")
	}
	if err := s.checkFlowText(f.ControllerID, f.Goal, f.OwnerSessionKey, f.RequesterOrigin, f.CurrentStep); err != nil {
		return fmt.Errorf("flow %s: %w", f.ID, err)
	}
	return nil
}

// insertStepArgs validates the steps of an InsertFlow and renders them.
func (s *RedisStore) insertStepArgs(f *Flow, steps []*FlowStep) ([]any, []string, error) {
	if most := min(maxInsertSteps, s.limits.StepsPerFlow); len(steps) > most {
		return nil, nil, fmt.Errorf("%w: flow %s has %d steps, at most %d can be inserted (maxInsertSteps, Limits.StepsPerFlow)", ErrInvalidData, f.ID, len(steps), most)
	}
	args := make([]any, 0, 9*len(steps))
	runIDs := make([]string, 0, len(steps))
	seen := make(map[string]bool, len(steps))
	seenID := make(map[uuid.UUID]bool, len(steps))
	for i, st := range steps {
		if st == nil {
			return nil, nil, fmt.Errorf("%w: flow %s: step %d is nil", ErrInvalidData, f.ID, i)
		}
		if err := checkStep(st); err != nil {
			return nil, nil, fmt.Errorf("flow %s: %w", f.ID, err)
		}
		if err := s.checkStepText(st.RunID, st.Task, st.ChildSessionKey); err != nil {
			return nil, nil, fmt.Errorf("flow %s: step %d (id %s): %w", f.ID, i+1, st.ID, err)
		}
		if st.ID != uuid.Nil && seenID[st.ID] {
			return nil, nil, fmt.Errorf("%w: flow %s has step id %s twice", ErrInvalidData, f.ID, st.ID)
		}
		seenID[st.ID] = true
		if st.FlowID != uuid.Nil && st.FlowID != f.ID {
			return nil, nil, fmt.Errorf("%w: step %q belongs to flow %s, not %s", ErrInvalidData, st.RunID, st.FlowID, f.ID)
		}
		if seen[st.RunID] {
			return nil, nil, fmt.Errorf("%w: flow %s has run_id %q twice", ErrDuplicateStep, f.ID, st.RunID)
		}
		seen[st.RunID] = true
		result, err := s.stepResult(st)
		if err != nil {
			return nil, nil, err
		}
		id := st.ID
		if id == uuid.Nil {
			id = uuid.New()
		}
		created, updated := st.CreatedAt, st.UpdatedAt
		if created.IsZero() {
			created = f.CreatedAt
		}
		if updated.IsZero() {
			updated = created
		}
		args = append(args, id.String(), string(st.Runtime), st.RunID, st.Task, string(st.Status),
			st.ChildSessionKey, string(result), created.UnixMilli(), updated.UnixMilli())
		runIDs = append(runIDs, st.RunID)
	}
	return args, runIDs, nil
}

// checkStep checks what every stored step needs.
func checkStep(st *FlowStep) error {
	switch {
	case st.RunID == "":
		return fmt.Errorf("%w: run_id is required", ErrInvalidData)
	case !st.Runtime.Valid():
		return fmt.Errorf("%w: step %q: unknown step runtime %q", ErrInvalidData, st.RunID, st.Runtime)
	case !st.Status.Valid():
		return fmt.Errorf("%w: step %q: unknown step status %q", ErrInvalidData, st.RunID, st.Status)
	}
	return nil
}

// stepResult returns a step's result as compact JSON (nil for none),
// within the state size limit.
func (s *RedisStore) stepResult(st *FlowStep) (json.RawMessage, error) {
	if st.Result == nil {
		return nil, nil
	}
	result, err := toJSON("result of step "+strconv.Quote(st.RunID), st.Result)
	if err != nil {
		return nil, err
	}
	if len(result) > s.maxState {
		return nil, fmt.Errorf("%w: the result of step %q is %d bytes, over the limit of %d", ErrInvalidData, st.RunID, len(result), s.maxState)
	}
	return result, nil
}

// insertEventArgs validates the events of an InsertFlow and renders the
// ones the event cap keeps; it returns them, their count and the newest
// event's id (the count of all events given).
func (s *RedisStore) insertEventArgs(f *Flow, events []*FlowEvent) ([]any, int, int64, error) {
	if len(events) == 0 {
		events = []*FlowEvent{{Kind: EventImported, At: f.UpdatedAt}}
	}
	total := int64(len(events))
	if s.eventCap > 0 && len(events) > s.eventCap {
		events = events[len(events)-s.eventCap:]
	}
	if len(events) > maxInsertEvents {
		return nil, 0, 0, fmt.Errorf("%w: flow %s has %d events to keep, at most %d can be inserted", ErrInvalidData, f.ID, len(events), maxInsertEvents)
	}
	args := make([]any, 0, 3*len(events))
	for i, ev := range events {
		if ev == nil {
			return nil, 0, 0, fmt.Errorf("%w: flow %s: event %d is nil", ErrInvalidData, f.ID, i)
		}
		kind, payload, err := s.eventParts(ev.Kind, ev.Payload)
		if err != nil {
			// Named by the id it would get (1..n in the order given).
			return nil, 0, 0, fmt.Errorf("flow %s: event %d: %w", f.ID, int(total)-len(events)+i+1, err)
		}
		at := ev.At
		if at.IsZero() {
			at = f.UpdatedAt
		}
		args = append(args, kind, at.UnixMilli(), string(payload))
	}
	// The byte bound (Limits.EventBytes) as events.lua keeps it: the
	// oldest entries go until the log fits, the newest always stays.
	if budget := s.limits.EventBytes; budget > 0 {
		rev := strconv.FormatInt(f.Revision, 10)
		size := func(i int) int { // the entry insert_flow.lua writes
			return len(`[,,,]`) + len(args[3*i].(string)) + len(rev) +
				len(strconv.FormatInt(args[3*i+1].(int64), 10)) + len(args[3*i+2].(string))
		}
		first, sum := len(events)-1, size(len(events)-1)
		for first > 0 && sum+size(first-1) <= budget {
			first--
			sum += size(first)
		}
		args = args[3*first:]
		events = events[first:]
	}
	return args, len(events), total, nil
}

// eventParts checks an event's kind and payload and renders them for a
// script: the kind as a JSON string, the payload as compact JSON ({} for
// none).
func (s *RedisStore) eventParts(kind EventKind, payload any) (string, json.RawMessage, error) {
	if err := s.checkEventKind(kind); err != nil {
		return "", nil, err
	}
	pl, err := toJSON("event payload", payload)
	if err != nil {
		return "", nil, err
	}
	if pl == nil {
		pl = json.RawMessage(`{}`)
	}
	if len(pl) > s.maxState {
		return "", nil, fmt.Errorf("%w: event payload is %d bytes, over the limit of %d", ErrInvalidData, len(pl), s.maxState)
	}
	return jsonString(string(kind)), pl, nil
}

// AppendEventAt appends one event of kind and payload (nil is {}) to a
// flow's audit log with at as its time (kept to the millisecond), not the
// store's clock: for importers and tools that carry events over from
// another log. The flow record, its revision included, does not change;
// the event carries the current revision and gets the next event id. The
// oldest events beyond the event cap are trimmed, and the event is
// announced on the watch channel like any other. An unknown flow is
// ErrNotFound; an empty kind, one over Limits.LabelBytes or not valid
// UTF-8, a zero at or a payload that is not JSON (or over the state size
// limit) is ErrInvalidData.
func (s *RedisStore) AppendEventAt(ctx context.Context, flowID uuid.UUID, kind EventKind, payload any, at time.Time) (*FlowEvent, error) {
	if at.IsZero() {
		return nil, fmt.Errorf("%w: an event needs a time", ErrInvalidData)
	}
	kindJSON, pl, err := s.eventParts(kind, payload)
	if err != nil {
		return nil, err
	}
	at = at.UTC().Truncate(time.Millisecond)
	args := append(s.head(flowID, strconv.FormatInt(at.UnixMilli(), 10), mutation{}),
		kindJSON, string(pl))
	v, err := s.run(ctx, s.scripts.appendEventAt, flowID, s.keys.flowKeys(flowID, ""), args...)
	if !applied(err) {
		return nil, fmt.Errorf("taskflow: append event: %w", err)
	}
	numbered, _ := v.(string)
	ev, derr := decodeNumbered(flowID, numbered)
	if derr != nil {
		return nil, derr
	}
	if err != nil {
		return ev, fmt.Errorf("taskflow: append event: %w", err) // applied, not confirmed replicated
	}
	return ev, nil
}

// GetStep returns the step of flowID whose ID is stepID. An unknown flow
// or step is ErrNotFound. Steps are kept by run id, so this reads the
// flow's steps until it meets the id: its cost grows with the flow's step
// count (FindStepByRunID is one read).
func (s *RedisStore) GetStep(ctx context.Context, flowID, stepID uuid.UUID) (*FlowStep, error) {
	keys := []string{s.keys.flow(flowID), s.keys.steps(flowID), s.keys.step(flowID, "")}
	v, err := s.run(ctx, s.scripts.getStep, flowID, keys, stepID.String())
	if err != nil {
		return nil, fmt.Errorf("taskflow: get step: %w", err)
	}
	if fields, _ := v.([]any); len(fields) == 0 {
		return nil, fmt.Errorf("%w: flow %s has no step %s", ErrNotFound, flowID, stepID)
	}
	return decodeStep(v)
}

// FindStepByRunID returns the step of flowID with runID. An unknown flow
// or run id is ErrNotFound.
func (s *RedisStore) FindStepByRunID(ctx context.Context, flowID uuid.UUID, runID string) (*FlowStep, error) {
	if runID == "" {
		return nil, fmt.Errorf("%w: run_id is required", ErrInvalidData)
	}
	keys := []string{s.keys.flow(flowID), s.keys.step(flowID, runID)}
	v, err := s.run(ctx, s.scripts.findStep, flowID, keys)
	if err != nil {
		return nil, fmt.Errorf("taskflow: find step: %w", err)
	}
	if fields, _ := v.([]any); len(fields) == 0 {
		return nil, fmt.Errorf("%w: flow %s has no step with run_id %q", ErrNotFound, flowID, runID)
	}
	return decodeStep(v)
}

// UpdateStep overwrites the stored step (st.FlowID, st.RunID) with st's
// Runtime, Task, Status, ChildSessionKey and Result (empty ones are
// removed) and UpdatedAt (zero is the store's clock), and returns the
// step as stored. st.ID must be the stored step's id, and its CreatedAt
// is kept. Like InsertStep this is store level: the flow's record and
// audit log do not change. An unknown flow or step is ErrNotFound;
// another id, an invalid runtime or status, a task or child session key
// over its bound (Limits) or not valid UTF-8, or a result that is not
// JSON is ErrInvalidData.
func (s *RedisStore) UpdateStep(ctx context.Context, st *FlowStep) (*FlowStep, error) {
	if st == nil {
		return nil, fmt.Errorf("%w: nil step", ErrInvalidData)
	}
	if err := checkStep(st); err != nil {
		return nil, err
	}
	if err := s.checkStepText(st.RunID, st.Task, st.ChildSessionKey); err != nil {
		return nil, err
	}
	result, err := s.stepResult(st)
	if err != nil {
		return nil, err
	}
	updated := st.UpdatedAt
	if updated.IsZero() {
		updated, _ = s.clock()
	}
	keys := []string{s.keys.flow(st.FlowID), s.keys.steps(st.FlowID), s.keys.step(st.FlowID, st.RunID)}
	v, err := s.run(ctx, s.scripts.updateStep, st.FlowID, keys,
		st.ID.String(), string(st.Runtime), st.Task, string(st.Status), st.ChildSessionKey, string(result),
		updated.UnixMilli())
	if err != nil {
		if errors.Is(err, errNoStep) {
			return nil, fmt.Errorf("%w: flow %s has no step with run_id %q", ErrNotFound, st.FlowID, st.RunID)
		}
		if !applied(err) {
			return nil, fmt.Errorf("taskflow: update step: %w", err)
		}
		got, derr := decodeStep(v)
		if derr != nil {
			return nil, derr
		}
		return got, fmt.Errorf("taskflow: update step: %w", err) // applied, not confirmed replicated
	}
	return decodeStep(v)
}
