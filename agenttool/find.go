package agenttool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/taskflow-dev/taskflow"
)

// Finding a session's flows: list_mine pages them newest created first
// through Manager.Find, always with the session's owner key as one of
// the filters, so no filter or cursor the model sends can reach a flow of
// another session. status, controller_id and attribute ("name=value", a
// search attribute set by start or spawn) narrow the list; a page may
// hold fewer flows than its limit while more follow (Find scans a bounded
// part of its index per call), so the model follows next_cursor until it
// is left out.

// listMine is the list_mine action.
func (t *Tool) listMine(ctx context.Context, s Session, a toolArgs) (json.RawMessage, error) {
	owner := s.OwnerKey()
	filter := taskflow.Filter{Owner: owner, Controller: strings.TrimSpace(a.ControllerID), Attribute: a.Attribute}
	if st := strings.TrimSpace(a.Status); st != "" {
		parsed, err := taskflow.ParseFlowStatus(st)
		if err != nil {
			return nil, argErr("\"status\" is %q; use one of %s", a.Status, statusList())
		}
		filter.Status = parsed
	}
	if filter.Attribute != "" && !strings.Contains(filter.Attribute, "=") {
		return nil, argErr("\"attribute\" must be \"name=value\", e.g. \"customer=acme\"; got %q", filter.Attribute)
	}
	limit, err := limitArg(a)
	if err != nil {
		return nil, err
	}
	cursor := strings.TrimSpace(a.Cursor)
	page, err := t.m.Find(ctx, filter, taskflow.WithLimit(limit), taskflow.WithCursor(cursor))
	if errors.Is(err, taskflow.ErrInvalidData) {
		if cursor != "" && strings.Contains(err.Error(), "cursor") {
			return nil, argErr("\"cursor\" %q is not a next_cursor that list_mine returned; leave it out for the first page", cursor)
		}
		return nil, fmt.Errorf("%w: cannot list_mine: %w", ErrArgs, err)
	}
	if err != nil {
		return nil, fmt.Errorf("taskflow tool: list_mine failed: %w", err)
	}
	total, err := t.m.CountByOwner(ctx, owner)
	if err != nil {
		return nil, fmt.Errorf("taskflow tool: list_mine failed: %w", err)
	}
	out := listResult{OK: true, Flows: make([]toolFlow, 0, len(page.Flows)), NextCursor: page.Next}
	for _, f := range page.Flows {
		if f.OwnerSessionKey != owner { // Find checks the owner; be certain
			continue
		}
		out.Flows = append(out.Flows, newToolFlow(f))
	}
	out.Count = len(out.Flows)
	out.Total = max(total, out.Count)
	out.Truncated = page.Next != ""
	return encodeResult(out)
}

// statusList names the statuses for an error text.
func statusList() string {
	var names []string
	for _, st := range taskflow.Statuses() {
		names = append(names, string(st))
	}
	return strings.Join(names, ", ")
}

// attributesArg reads the search attributes of start or a spawned child
// (name is the argument's name in error texts): a JSON object whose
// values are strings, nil when absent or empty. The names, values and
// their count are the store's to check (taskflow.CreateManagedInput's
// rules); its refusal reaches the model as an ErrArgs naming the
// attribute.
func attributesArg(name string, raw json.RawMessage) (map[string]string, error) {
	obj, err := objectArg(name, raw)
	if obj == nil || err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, argErr("malformed %q: %s", name, describeJSONError(err))
	}
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		var sv string
		if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &sv) != nil {
			return nil, argErr("%s: attribute %q must be a string (write a number as a string, e.g. \"2\"), not %s", name, k, jsonKind(v))
		}
		out[k] = sv
	}
	return out, nil
}
