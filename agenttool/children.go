package agenttool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/taskflow-dev/taskflow"
)

// Flows of flows through the tool: spawn starts children under a flow of
// the session (Manager.StartChildren), wait_children sets it waiting on
// them (taskflow.WaitChildren), list_children pages them
// (Manager.ListChildren). Each checks that the flow named by flow_id is
// the session's, as every action naming a flow does. A child belongs to
// the session that spawned it, whatever the model sends: a child takes
// no owner argument, so it is a flow of the session like one it started,
// and its controller obeys the same rule as start's.

// SpawnLimit is the most children one spawn call starts. A flow may hold
// more (taskflow.Limits.ChildrenPerFlow) over several calls.
const SpawnLimit = 100

// childArgs is one child of a spawn call, as the model sends it.
type childArgs struct {
	Key           string          `json:"key"`
	ControllerID  string          `json:"controller_id"`
	Goal          string          `json:"goal"`
	CurrentStep   string          `json:"current_step"`
	State         json.RawMessage `json:"state"`
	Attributes    json.RawMessage `json:"attributes"`
	OnParentClose string          `json:"on_parent_close"`
}

// parentClosePolicies are the values of on_parent_close.
var parentClosePolicies = []taskflow.ParentClosePolicy{taskflow.ParentCloseCancel, taskflow.ParentCloseRequestCancel, taskflow.ParentCloseAbandon}

// childProps are the arguments a child takes: the properties of the
// schema's children items.
func childProps() []string {
	props, _ := sourceSchema()
	for _, p := range props {
		if p.name == "children" && p.items != nil {
			names := make([]string, 0, len(p.items.props))
			for _, c := range p.items.props {
				names = append(names, c.name)
			}
			return names
		}
	}
	return nil
}

func (t *Tool) spawn(ctx context.Context, s Session, a toolArgs) (json.RawMessage, error) {
	id, err := flowIDArg(ActionSpawn, a.FlowID)
	if err != nil {
		return nil, err
	}
	children, err := t.childInputs(s, a.Children)
	if err != nil {
		return nil, err
	}
	parent, err := t.ownFlow(ctx, s, ActionSpawn, id)
	if parent == nil || err != nil {
		return notFoundOr(id, err)
	}
	flows, err := t.m.StartChildren(ctx, id, children)
	if err != nil {
		if errors.Is(err, taskflow.ErrNotFound) { // pruned meanwhile
			return notFound(id)
		}
		if errors.Is(err, taskflow.ErrIdempotencyConflict) {
			return nil, fmt.Errorf("%w: a key of these children already spawned a child of flow %s with other arguments; use a new key for a new child, or list_children to see its children (%w)",
				ErrArgs, id, taskflow.ErrIdempotencyConflict)
		}
		return nil, t.managerError(ActionSpawn, id, err)
	}
	out := spawnResult{OK: true, Count: len(flows), Flows: make([]toolFlow, 0, len(flows))}
	for _, f := range flows {
		// A key the host started before under this flow for another owner
		// is an idempotency conflict; be certain all the same.
		if f == nil || f.OwnerSessionKey != s.OwnerKey() {
			return nil, fmt.Errorf("%w: a child of flow %s belongs to a different session; use another key", ErrForbidden, id)
		}
		out.Flows = append(out.Flows, newToolFlow(f))
	}
	return encodeResult(out)
}

// spawnResult is spawn's answer: the children, in the order given.
type spawnResult struct {
	OK    bool       `json:"ok"`
	Count int        `json:"count"`
	Flows []toolFlow `json:"flows"`
}

// childInputs checks spawn's children and builds their inputs, each
// owned by s.
func (t *Tool) childInputs(s Session, raw json.RawMessage) ([]taskflow.ChildInput, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, argErr(`spawn needs "children": a list of {"key","controller_id","goal"} objects, each with optional current_step, state and on_parent_close`)
	}
	if raw[0] != '[' {
		return nil, argErr(`"children" must be a JSON array of objects, not %s`, jsonKind(raw))
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, argErr("malformed \"children\": %s", describeJSONError(err))
	}
	switch {
	case len(items) == 0:
		return nil, argErr(`"children" is empty: spawn needs 1 to %d children`, SpawnLimit)
	case len(items) > SpawnLimit:
		return nil, argErr(`"children" holds %d children; spawn starts at most %d a call (send the rest in another call)`, len(items), SpawnLimit)
	}
	allowed := childProps()
	seen := make(map[string]int, len(items))
	out := make([]taskflow.ChildInput, 0, len(items))
	for i, item := range items {
		at := "children[" + strconv.Itoa(i) + "]"
		item = bytes.TrimSpace(item)
		if len(item) == 0 || item[0] != '{' {
			return nil, argErr("%s must be a JSON object, not %s", at, jsonKind(item))
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(item, &m); err != nil {
			return nil, argErr("malformed %s: %s", at, describeJSONError(err))
		}
		var unknown []string
		for k := range m {
			if !slices.Contains(allowed, k) {
				unknown = append(unknown, strconv.Quote(k))
			}
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			return nil, argErr("%s does not take %s: a child takes only %s (it belongs to this session); nothing was changed",
				at, strings.Join(unknown, ", "), strings.Join(allowed, ", "))
		}
		var c childArgs
		if err := json.Unmarshal(item, &c); err != nil {
			return nil, argErr("malformed %s: %s", at, describeJSONError(err))
		}
		key := strings.TrimSpace(c.Key)
		switch {
		case key == "":
			return nil, argErr(`%s needs "key" (the child's name among the flow's children, e.g. "chapter-3"): key cannot be empty`, at)
		case len(key) > MaxIdempotencyKeyBytes:
			return nil, argErr(`%s: "key" is %d bytes; at most %d`, at, len(key), MaxIdempotencyKeyBytes)
		}
		if j, dup := seen[key]; dup {
			return nil, argErr("children[%d] and %s have the same key %q; each child needs its own", j, at, key)
		}
		seen[key] = i
		controller, goal := strings.TrimSpace(c.ControllerID), strings.TrimSpace(c.Goal)
		if controller == "" {
			return nil, argErr(`%s needs "controller_id" (the child's kind of job, e.g. "kate/chapter"): controller_id cannot be empty`, at)
		}
		if goal == "" {
			return nil, argErr(`%s needs "goal" (what the child is meant to achieve): goal cannot be empty`, at)
		}
		if err := t.cfg.controllers(s, controller); err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		state, err := objectArg(at+".state", c.State)
		if err != nil {
			return nil, err
		}
		if state == nil {
			state = json.RawMessage(`{}`)
		}
		attrs, err := attributesArg(at+".attributes", c.Attributes)
		if err != nil {
			return nil, err
		}
		step := strings.TrimSpace(c.CurrentStep)
		if step == "" {
			step = "init"
		}
		policy := taskflow.ParentClosePolicy(strings.TrimSpace(c.OnParentClose))
		if policy == "" {
			policy = taskflow.ParentCloseCancel
		}
		if !slices.Contains(parentClosePolicies, policy) {
			return nil, argErr(`%s: "on_parent_close" is %q; use cancel (the default), request_cancel or abandon`, at, c.OnParentClose)
		}
		out = append(out, taskflow.ChildInput{
			Key: key,
			Flow: taskflow.CreateManagedInput{
				ControllerID:    controller,
				Goal:            goal,
				OwnerSessionKey: s.OwnerKey(),
				RequesterOrigin: strings.TrimSpace(s.SessionID),
				CurrentStep:     step,
				State:           state,
				Attributes:      attrs,
			},
			OnParentClose: policy,
		})
	}
	return out, nil
}

func (t *Tool) waitChildren(ctx context.Context, s Session, a toolArgs) (json.RawMessage, error) {
	id, err := flowIDArg(ActionWaitChildren, a.FlowID)
	if err != nil {
		return nil, err
	}
	join := taskflow.Join{FailFast: a.FailFast}
	if a.Need != nil {
		if *a.Need < 0 {
			return nil, argErr(`"need" is %d; it must be 0 (all the children) or more (1: any)`, *a.Need)
		}
		join.Need = *a.Need
	}
	deadline := strings.TrimSpace(a.Deadline)
	switch {
	case deadline != "" && a.TimeoutSeconds != nil:
		return nil, argErr(`send either "deadline" or "timeout_seconds", not both`)
	case deadline != "":
		at, err := time.Parse(time.RFC3339Nano, deadline)
		if err != nil {
			return nil, argErr(`"deadline" must be an RFC 3339 time such as "2030-01-02T15:04:05Z", got %q`, deadline)
		}
		if err := t.checkAhead(`the "deadline"`, `a deadline`, at); err != nil {
			return nil, err
		}
		join.Deadline = at
	case a.TimeoutSeconds != nil:
		n := *a.TimeoutSeconds
		if n <= 0 {
			return nil, argErr(`"timeout_seconds" is %d; it must be a positive number of seconds`, n)
		}
		if n > int64(t.cfg.maxHorizon/time.Second) {
			return nil, argErr(`"timeout_seconds" (%d) is too far ahead: it exceeds the max horizon of %s (%d seconds)`,
				n, formatHorizon(t.cfg.maxHorizon), int64(t.cfg.maxHorizon/time.Second))
		}
		join.Deadline = t.cfg.now().Add(time.Duration(n) * time.Second)
	}
	f, err := t.ownFlow(ctx, s, ActionWaitChildren, id)
	if f == nil || err != nil {
		return notFoundOr(id, err)
	}
	if f.Children == 0 && !f.Status.IsTerminal() {
		return nil, argErr("flow %s has no children to wait for; spawn them first", id)
	}
	f, err = t.m.SetWaiting(ctx, id, taskflow.WaitChildren(join))
	if err != nil {
		if errors.Is(err, taskflow.ErrNotFound) {
			return notFound(id)
		}
		return nil, t.managerError(ActionWaitChildren, id, err)
	}
	return encodeResult(flowResult{OK: true, Flow: newToolFlow(f)})
}

func (t *Tool) listChildren(ctx context.Context, s Session, a toolArgs) (json.RawMessage, error) {
	id, err := flowIDArg(ActionListChildren, a.FlowID)
	if err != nil {
		return nil, err
	}
	limit, err := limitArg(a)
	if err != nil {
		return nil, err
	}
	cursor := strings.TrimSpace(a.Cursor)
	if cursor != "" {
		if _, err := strconv.ParseUint(cursor, 10, 63); err != nil {
			return nil, argErr(`"cursor" %q is not a cursor list_children gave: send its "next_cursor" as it is, or leave cursor out for the first page`, cursor)
		}
	}
	f, err := t.ownFlow(ctx, s, ActionListChildren, id)
	if f == nil || err != nil {
		return notFoundOr(id, err)
	}
	page, next, err := t.m.ListChildren(ctx, id, taskflow.WithLimit(limit), taskflow.WithCursor(cursor))
	if err != nil {
		return nil, t.managerError(ActionListChildren, id, err)
	}
	out := childrenResult{OK: true, Count: len(page), Children: make([]toolChild, 0, len(page)), NextCursor: next}
	for _, c := range page {
		out.Children = append(out.Children, toolChild{ID: c.ID.String(), Key: c.Key, Status: c.Status, Ended: c.Ended,
			State: c.State, StateOmitted: c.StateOmitted, Error: c.Error})
	}
	return encodeResult(out)
}

// limitArg is a page's "limit": ListLimit when absent, else 1 to
// ListLimit.
func limitArg(a toolArgs) (int, error) {
	if a.Limit == nil {
		return ListLimit, nil
	}
	if *a.Limit < 1 || *a.Limit > ListLimit {
		return 0, argErr(`"limit" is %d; it must be 1 to %d`, *a.Limit, ListLimit)
	}
	return *a.Limit, nil
}
