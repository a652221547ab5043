package agenttool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

// The agent tool's errors, written for the model, and the argument
// checks that raise them.

// argErr is an error in the model's arguments (ErrArgs).
func argErr(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrArgs}, a...)...)
}

// describeJSONError turns a decoding error into a short model-friendly
// text.
func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("%q must be a %s, not a JSON %s", te.Field, jsonTypeName(te.Type.Kind().String()), te.Value)
	}
	return err.Error()
}

func jsonTypeName(kind string) string {
	switch kind {
	case "string":
		return "string"
	case "slice", "map", "struct":
		return "JSON value"
	case "int", "int64":
		return "whole number"
	case "bool":
		return "boolean"
	default:
		return kind
	}
}

// objectArg returns an optional JSON-object argument: nil when it is
// absent or null.
func objectArg(name string, raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] != '{' {
		return nil, argErr("%q must be a JSON object, not %s", name, jsonKind(raw))
	}
	return raw, nil
}

// jsonKind names the type of a valid JSON value.
func jsonKind(raw json.RawMessage) string {
	switch raw[0] {
	case '"':
		return "a string"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case '{':
		return "an object"
	default:
		return "a number"
	}
}

func notFound(id uuid.UUID) (json.RawMessage, error) {
	return encodeResult(notFoundResult{OK: false, Error: "not_found", FlowID: id.String()})
}

// managerError turns a manager's refusal into an error that tells the
// model what to do, keeping the manager's error in the chain.
func (t *Tool) managerError(action string, id uuid.UUID, err error) error {
	var te *taskflow.TransitionError
	if errors.As(err, &te) {
		from := te.From
		switch {
		// The sentinel alone: the TransitionError's text would repeat the
		// flow id and, for advance, name no target status.
		case errors.Is(err, taskflow.ErrAlreadyTerminal):
			return fmt.Errorf("cannot %s: flow %s is already %s, and a %s flow cannot change any more; start a new flow if there is more to do (%w)",
				action, id, from, from, taskflow.ErrAlreadyTerminal)
		case errors.Is(err, taskflow.ErrCancelPending):
			return fmt.Errorf("cannot %s: a cancel was requested for flow %s; the only action it accepts now is cancel (%w)", action, id, taskflow.ErrCancelPending)
		case errors.Is(err, taskflow.ErrIllegalTransition):
			return fmt.Errorf("cannot %s: flow %s is %s; %s (%w)", action, id, from, illegalHint(action, from), err)
		}
	}
	if errors.Is(err, taskflow.ErrInvalidData) {
		return fmt.Errorf("%w: cannot %s: %w", ErrArgs, action, err)
	}
	return fmt.Errorf("taskflow tool: %s failed: %w", action, err)
}

// illegalHint says what the model can do instead of a refused move.
func illegalHint(action string, from taskflow.FlowStatus) string {
	switch from {
	case taskflow.StatusWaiting:
		switch action {
		case ActionWait, ActionWaitChildren:
			return "it is already waiting and resumes by itself when its wait condition is met; fail or cancel it if it should not go on"
		case ActionFinish:
			return "it resumes by itself when its wait condition is met, and can be finished once it is running again; fail or cancel it if it should not go on"
		}
		return "it resumes by itself when its wait condition is met; fail or cancel it if it should not go on"
	case taskflow.StatusCreated:
		return "it was never started; cancel it and start a new flow"
	}
	return "only a running flow can " + action
}

// ignoredArgs are arguments that are accepted and ignored: a model may
// copy a flow's revision from a result, and the tool never does
// compare-and-set.
var ignoredArgs = map[string]bool{"revision": true}

// checkArgNames refuses an argument the action does not take (an unknown
// action is Call's to report). args is the normalized JSON object.
func checkArgNames(action string, args json.RawMessage) error {
	spec := actionSpecOf(action)
	if spec == nil {
		return nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(args, &m) != nil {
		return nil // Call reports the malformed arguments
	}
	var unknown []string
	for k := range m {
		if k != "action" && !ignoredArgs[k] && !slices.Contains(spec.props, k) {
			unknown = append(unknown, strconv.Quote(k))
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	takes := "no other arguments"
	if len(spec.props) > 0 {
		takes = "only " + strings.Join(spec.props, ", ")
	}
	what := "an argument"
	if len(unknown) > 1 {
		what = "arguments"
	}
	return argErr("%s does not take %s %s: it takes %s; nothing was changed", action, what, strings.Join(unknown, ", "), takes)
}

// waitKeys are the keys each kind of wait_condition takes.
var waitKeys = map[taskflow.WaitKind][]string{
	taskflow.WaitKindTimer:         {"kind", "at"},
	taskflow.WaitKindExternalEvent: {"kind", "topic", "correlation_id"},
	taskflow.WaitKindManual:        {"kind"},
}

// checkWaitKeys refuses a key of wait_condition that its kind does not
// take ("at" on a manual wait, a misspelt "correlation"). An unknown kind
// is ParseWaitCondition's to report.
func checkWaitKeys(raw json.RawMessage) error {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	var kind taskflow.WaitKind
	if json.Unmarshal(m["kind"], &kind) != nil {
		return nil
	}
	keys, ok := waitKeys[kind]
	if !ok {
		return nil
	}
	var unknown []string
	for k := range m {
		if !slices.Contains(keys, k) {
			unknown = append(unknown, strconv.Quote(k))
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return argErr("a %s wait_condition does not take %s: it takes only %s; use %s", kind, strings.Join(unknown, ", "), strings.Join(keys, ", "), waitForms)
}
