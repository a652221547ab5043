// Package agenttool is taskflow's agent-facing tool: one tool an LLM
// calls to keep durable flows (start, status, advance, wait, finish,
// fail, cancel, list_mine), flows of flows (spawn, wait_children,
// list_children), explain, and schedules of follow-ups (schedule,
// list_schedules, unschedule), with its definitions for each LLM provider
// and MCP.
//
// A host makes the tool on a taskflow.Manager with New, offers the model
// a definition (Tool.Definition, or OpenAIDefinitions,
// AnthropicDefinitions, GeminiDefinitions and MCPDefinitions, as one
// combined tool or one tool per action), and routes each of the model's
// calls to Tool.Call or Tool.CallTool with the caller's Session. Every
// flow belongs to the session that started it; a session never sees
// another's flows, starts flows only in its agent's controller namespace
// (WithAllowedControllers and WithControllerPolicy change that) and
// waits on events under its agent's topics (Topic). Errors are written
// for the model: ErrArgs says what to fix, ErrForbidden that the flow is
// another session's.
//
// The package uses only the exported API of package taskflow; its own
// names are what a tool host needs, kept out of the core's package.
package agenttool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

// Name is the name of the agent-facing tool, as an LLM sees it.
const Name = "taskflow"

// DefaultTimerMaxHorizon is how far ahead a timer wait, or the deadline
// of a wait_children, may be set through the tool unless
// WithTimerMaxHorizon says otherwise: 30 days.
const DefaultTimerMaxHorizon = 30 * 24 * time.Hour

// ListLimit is how many flows a page of the list_mine action holds at
// most, and its default: the session's most recently created flows.
const ListLimit = 100

// The tool's actions, the values of the "action" argument.
const (
	ActionStart    = "start"
	ActionStatus   = "status"
	ActionAdvance  = "advance"
	ActionWait     = "wait"
	ActionFinish   = "finish"
	ActionFail     = "fail"
	ActionCancel   = "cancel"
	ActionListMine = "list_mine"
	// ActionSpawn starts child flows under a flow of the session
	// (Manager.StartChildren).
	ActionSpawn = "spawn"
	// ActionWaitChildren sets a flow of the session waiting on its
	// children (taskflow.WaitChildren).
	ActionWaitChildren = "wait_children"
	// ActionListChildren pages a flow's children (Manager.ListChildren).
	ActionListChildren = "list_children"
	// ActionExplain says why a flow of the session is where it is and
	// what will move it (Manager.Explain).
	ActionExplain = "explain"
	// ActionSchedule creates (or replaces) a schedule of the session that
	// starts a flow on a cron expression or an interval
	// (Manager.CreateSchedule; see MaxSchedulesPerSession).
	ActionSchedule = "schedule"
	// ActionListSchedules lists the session's schedules.
	ActionListSchedules = "list_schedules"
	// ActionUnschedule deletes a schedule of the session.
	ActionUnschedule = "unschedule"
)

// Actions returns the tool's actions in the order the schema lists
// them.
func Actions() []string {
	return []string{ActionStart, ActionStatus, ActionAdvance, ActionWait, ActionFinish, ActionFail, ActionCancel, ActionListMine,
		ActionSpawn, ActionWaitChildren, ActionListChildren, ActionExplain, ActionSchedule, ActionListSchedules, ActionUnschedule}
}

// Errors of the tool. Every argument or validation problem wraps
// ErrArgs, and every attempt to touch a flow of another session wraps
// ErrForbidden, so a host can tell them apart with errors.Is. Errors the
// manager returns (taskflow.ErrAlreadyTerminal,
// taskflow.ErrCancelPending, taskflow.ErrIllegalTransition,
// taskflow.ErrInvalidData, ...) stay visible through the tool's error
// with errors.Is as well.
var (
	// ErrArgs: the call's arguments (or its session) are missing,
	// malformed or refused by a guardrail. The error text says what to fix.
	ErrArgs = errors.New("taskflow: invalid tool arguments")
	// ErrForbidden: the flow named by the call belongs to another session.
	// The error never carries any data of that flow.
	ErrForbidden = errors.New("taskflow: forbidden")
)

// Session identifies the caller of the tool: the agent and its session.
// Every flow the tool creates is owned by the session, and only that
// session can see or change it through the tool.
type Session struct {
	// AgentID identifies the agent, e.g. "kate". It must not be empty and
	// must not contain ':' (it would make owner keys ambiguous).
	AgentID string
	// SessionID identifies the agent's session. It must not be empty.
	SessionID string
}

// OwnerKey returns the session's owner key, the tenancy key of its flows:
// "agent:<agent_id>:session:<session_id>", with both ids trimmed of
// surrounding white space.
func (s Session) OwnerKey() string {
	return "agent:" + strings.TrimSpace(s.AgentID) + ":session:" + strings.TrimSpace(s.SessionID)
}

// validate refuses a session that cannot own flows.
func (s Session) validate() error {
	agent, session := strings.TrimSpace(s.AgentID), strings.TrimSpace(s.SessionID)
	if agent == "" || session == "" {
		return fmt.Errorf("%w: no session: the call needs both an agent id and a session id (session_id cannot be empty)", ErrArgs)
	}
	if strings.Contains(agent, ":") {
		return fmt.Errorf("%w: the agent id %q contains ':', which would make the owner key ambiguous", ErrArgs, agent)
	}
	return nil
}

// Option configures a Tool.
type Option func(*config)

type config struct {
	maxHorizon time.Duration
	now        func() time.Time
	// controllers refuses controller ids a session may not name (see
	// WithAllowedControllers); the default is ownNamespace.
	controllers func(s Session, controllerID string) error
}

// WithTimerMaxHorizon sets how far in the future a timer wait, or the
// deadline of a wait_children, may be set (default
// DefaultTimerMaxHorizon, 30 days). A timer's "at" and a deadline must be
// strictly after now and at most now + d. d must be positive: zero or a
// negative value keeps the default. There is no upper limit.
func WithTimerMaxHorizon(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.maxHorizon = d
		}
	}
}

// WithClock sets the clock the tool checks timer waits against
// (default: the clock of the manager's store, see taskflow.WithClock). A nil clock
// keeps the default.
func WithClock(now func() time.Time) Option {
	return func(c *config) {
		if now != nil {
			c.now = now
		}
	}
}

// Tool is the agent-facing tool: one tool named "taskflow" that an LLM
// calls with a JSON object whose "action" is one of start, status,
// advance, wait, finish, fail, cancel, list_mine, spawn, wait_children,
// list_children, explain, schedule, list_schedules and unschedule. Hand
// Definition to the LLM provider and route the model's calls to Call with the caller's Session. A Tool is safe for
// concurrent use.
type Tool struct {
	m   *taskflow.Manager
	cfg config
}

// New returns the tool on m. See WithTimerMaxHorizon, WithClock,
// WithAllowedControllers and WithControllerPolicy for the options; by
// default a session may start flows only in its agent's controller
// namespace, and its external_event waits are scoped to its agent (see
// Topic).
func New(m *taskflow.Manager, opts ...Option) *Tool {
	cfg := config{maxHorizon: DefaultTimerMaxHorizon, controllers: ownNamespace}
	if m != nil && m.Store() != nil {
		cfg.now = m.Store().Now
	}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	return &Tool{m: m, cfg: cfg}
}

// Call runs one call of the tool by session s with the model's arguments
// args (a JSON object with an "action"), and returns the result to hand
// back to the model:
//
//   - start, status, advance, wait, finish, fail, cancel:
//     {"ok":true,"flow":{id, controller_id, goal, current_step, status,
//     cancel_requested, state, wait, revision, created_at, updated_at}}
//   - list_mine: {"ok":true,"count":N,"total":T,"truncated":B,
//     "flows":[...],"next_cursor":"..."}, the session's most recently
//     created flows, newest first, ListLimit a page (or "limit"), those
//     matching its optional filters status, controller_id and attribute
//     ("name=value") when given; T counts all the session's flows, B says
//     more may follow, and next_cursor (left out after the last page)
//     sent back as "cursor" continues (see find.go)
//   - spawn: {"ok":true,"count":N,"flows":[...]}, the children in the
//     order given; wait_children: {"ok":true,"flow":{...}}; list_children:
//     {"ok":true,"count":N,"children":[{id, key, status, ended, state,
//     state_omitted, error}...],"next_cursor":"..."} (see children.go)
//   - explain: {"ok":true,"explanation":{flow_id, status, code, stuck,
//     text, moves, facts}}, the flow's taskflow.Explanation (see
//     explain.go)
//   - schedule: {"ok":true,"schedule":{name, cron, every_seconds,
//     time_zone, controller_id, goal, next_fire, paused, fired, skipped,
//     last_flow_id},"replaced":B}; list_schedules: {"ok":true,"count":N,
//     "schedules":[...]}; unschedule: {"ok":true,"name":"...",
//     "deleted":true} or {"ok":false,"name":"...","error":"not_found"}
//     (see schedules.go)
//   - a flow_id that names no flow: {"ok":false,"error":"not_found",
//     "flow_id":"<id>"}, with a nil error
//
// Start creates the flow owned by s.OwnerKey() with the session id as
// requester origin, and starts it (status running, revision 1). Any
// action naming a flow first checks that the flow belongs to s: a flow of
// another session is an error wrapping ErrForbidden that says it "belongs
// to a different session" and carries none of its data, and nothing is
// changed. Missing, malformed or refused arguments (including a missing
// session and the guardrails of wait: a timer must be in the future and
// within the maximum horizon) are errors wrapping ErrArgs, and so is
// an argument the action does not take (a misspelt "next_step", or
// "patch" on finish): it is refused, never ignored, so a call that would
// change nothing the model meant does not come back ok. The same holds for
// a key of wait_condition that its kind does not take. A move the
// flow's status does not allow is an error that says what to do instead
// and wraps the manager's sentinel (taskflow.ErrAlreadyTerminal,
// taskflow.ErrCancelPending, taskflow.ErrIllegalTransition). The model never handles revisions: a "revision"
// argument (a model may copy it from a result) is ignored. Error texts are
// written for the model.
func (t *Tool) Call(ctx context.Context, s Session, args json.RawMessage) (json.RawMessage, error) {
	if t == nil || t.m == nil || t.m.Store() == nil {
		return nil, errors.New("taskflow tool: the tool has no manager (use agenttool.New with a Manager)")
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	trimmed := bytes.TrimSpace(args)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, argErr("the arguments must be a JSON object with an \"action\" (one of %s)", actionList())
	}
	trimmed, err := normalizeArgs(trimmed) // the strict and Gemini forms (tool_definitions.go)
	if err != nil {
		return nil, err
	}
	var a toolArgs
	if err := json.Unmarshal(trimmed, &a); err != nil {
		return nil, argErr("malformed arguments: %s", describeJSONError(err))
	}
	action := strings.TrimSpace(a.Action)
	if err := checkArgNames(action, trimmed); err != nil {
		return nil, err
	}
	switch action {
	case ActionStart:
		return t.start(ctx, s, a)
	case ActionListMine:
		return t.listMine(ctx, s, a)
	case ActionStatus, ActionAdvance, ActionWait, ActionFinish, ActionFail, ActionCancel:
		return t.flowAction(ctx, s, action, a)
	case ActionSpawn:
		return t.spawn(ctx, s, a)
	case ActionWaitChildren:
		return t.waitChildren(ctx, s, a)
	case ActionListChildren:
		return t.listChildren(ctx, s, a)
	case ActionExplain:
		return t.explain(ctx, s, a)
	case ActionSchedule:
		return t.schedule(ctx, s, a)
	case ActionListSchedules:
		return t.listSchedules(ctx, s)
	case ActionUnschedule:
		return t.unschedule(ctx, s, a)
	case "":
		return nil, argErr("\"action\" is missing; it must be one of %s", actionList())
	default:
		return nil, argErr("unknown action %q; it must be one of %s", action, actionList())
	}
}

func actionList() string { return strings.Join(Actions(), ", ") }

func (t *Tool) start(ctx context.Context, s Session, a toolArgs) (json.RawMessage, error) {
	controller, goal := strings.TrimSpace(a.ControllerID), strings.TrimSpace(a.Goal)
	if controller == "" {
		return nil, argErr("start needs \"controller_id\" (a label for the kind of job, e.g. \"kate/inbox-triage\"): controller_id cannot be empty")
	}
	if goal == "" {
		return nil, argErr("start needs \"goal\" (what the flow is meant to achieve, in plain words): goal cannot be empty")
	}
	if err := t.cfg.controllers(s, controller); err != nil {
		return nil, err
	}
	step := strings.TrimSpace(a.CurrentStep)
	if step == "" {
		step = "init"
	}
	state, err := objectArg("state", a.State)
	if err != nil {
		return nil, err
	}
	if state == nil {
		state = json.RawMessage(`{}`)
	}
	// Manager.CreateMirrored is created-then-started in one atomic script:
	// the same flow and events (created, started; revision 1) as
	// CreateManaged followed by StartRunning, without a window in which a crash leaves
	// a flow stuck in created.
	in := taskflow.CreateManagedInput{
		ControllerID:    controller,
		Goal:            goal,
		OwnerSessionKey: s.OwnerKey(),
		RequesterOrigin: strings.TrimSpace(s.SessionID),
		CurrentStep:     step,
		State:           state,
	}
	if in.Attributes, err = attributesArg("attributes", a.Attributes); err != nil {
		return nil, err
	}
	if key := strings.TrimSpace(a.IdempotencyKey); key != "" {
		if in.IdempotencyKey, err = toolIdempotencyKey(s, key); err != nil {
			return nil, err
		}
	}
	f, err := t.m.CreateMirrored(ctx, in)
	if err != nil {
		if cerr := idempotencyConflict(s, strings.TrimSpace(a.IdempotencyKey), err); cerr != nil {
			return nil, cerr
		}
		return nil, t.managerError(ActionStart, uuid.Nil, err)
	}
	return encodeResult(flowResult{OK: true, Flow: newToolFlow(f)})
}

// flowAction runs an action that names a flow: it validates the
// arguments, reads the flow, checks its owner, and only then mutates.
func (t *Tool) flowAction(ctx context.Context, s Session, action string, a toolArgs) (json.RawMessage, error) {
	id, err := flowIDArg(action, a.FlowID)
	if err != nil {
		return nil, err
	}

	// Validate everything that does not need the flow first, so a bad call
	// costs no round trip.
	var mutate func() (*taskflow.Flow, error)
	switch action {
	case ActionStatus:
	case ActionAdvance:
		patch, err := objectArg("patch", a.Patch)
		if err != nil {
			return nil, err
		}
		step := strings.TrimSpace(a.CurrentStep)
		if patch == nil && step == "" {
			return nil, argErr("advance needs \"patch\" (a JSON object of state keys to set) and/or \"current_step\"")
		}
		mutate = func() (*taskflow.Flow, error) {
			var p any
			if patch != nil {
				p = patch
			}
			return t.m.UpdateState(ctx, id, p, step)
		}
	case ActionWait:
		cond, err := t.waitCondition(a.WaitCondition)
		if err != nil {
			return nil, err
		}
		cond = scopeWait(s, cond) // events reach only this agent's waits
		mutate = func() (*taskflow.Flow, error) { return t.m.SetWaiting(ctx, id, cond) }
	case ActionFinish:
		final, err := objectArg("final_state", a.FinalState)
		if err != nil {
			return nil, err
		}
		mutate = func() (*taskflow.Flow, error) {
			var p any
			if final != nil {
				p = final
			}
			return t.m.Finish(ctx, id, p)
		}
	case ActionFail:
		reason := strings.TrimSpace(a.Reason)
		if reason == "" {
			return nil, argErr("fail needs \"reason\" (why the flow failed): reason cannot be empty")
		}
		mutate = func() (*taskflow.Flow, error) { return t.m.Fail(ctx, id, reason) }
	case ActionCancel:
		mutate = func() (*taskflow.Flow, error) { return t.m.Cancel(ctx, id) }
	}

	f, err := t.ownFlow(ctx, s, action, id)
	if f == nil || err != nil {
		return notFoundOr(id, err)
	}
	if mutate != nil {
		f, err = mutate()
		if err != nil {
			if errors.Is(err, taskflow.ErrNotFound) { // pruned meanwhile
				return notFound(id)
			}
			return nil, t.managerError(action, id, err)
		}
	}
	return encodeResult(flowResult{OK: true, Flow: newToolFlow(f)})
}

const waitForms = `{"kind":"timer","at":"<RFC 3339 time>"}, {"kind":"external_event","topic":"...","correlation_id":"..."} or {"kind":"manual"}`

// flowIDArg reads the flow_id argument of action.
func flowIDArg(action, raw string) (uuid.UUID, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return uuid.Nil, argErr("%s needs \"flow_id\" (the flow's UUID, as returned by start or list_mine)", action)
	}
	id, err := parseFlowID(raw)
	if err != nil {
		return uuid.Nil, argErr("flow_id must be a UUID such as \"123e4567-e89b-12d3-a456-426614174000\", got %q", raw)
	}
	return id, nil
}

// ownFlow reads flow id for action and checks that it belongs to s: a
// flow of another session is an error wrapping ErrForbidden that carries
// none of its data. A missing flow is (nil, nil). The owner of a flow
// never changes, so checking it on a read before a change is enough.
func (t *Tool) ownFlow(ctx context.Context, s Session, action string, id uuid.UUID) (*taskflow.Flow, error) {
	f, err := t.m.Get(ctx, id)
	if err != nil {
		if errors.Is(err, taskflow.ErrNotFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("taskflow tool: %s failed: %w", action, err)
	}
	if f.OwnerSessionKey != s.OwnerKey() {
		return nil, fmt.Errorf("%w: flow %s belongs to a different session; use list_mine to see your flows", ErrForbidden, id)
	}
	return f, nil
}

// notFoundOr is the answer when ownFlow found no flow of the session:
// its error, or the not_found result.
func notFoundOr(id uuid.UUID, err error) (json.RawMessage, error) {
	if err != nil {
		return nil, err
	}
	return notFound(id)
}

// waitCondition parses and checks the wait action's condition.
func (t *Tool) waitCondition(raw json.RawMessage) (taskflow.WaitCondition, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return taskflow.WaitCondition{}, argErr("wait needs \"wait_condition\": %s", waitForms)
	}
	if raw[0] != '{' {
		return taskflow.WaitCondition{}, argErr("\"wait_condition\" must be a JSON object (%s), not %s", waitForms, jsonKind(raw))
	}
	if err := checkWaitKeys(raw); err != nil {
		return taskflow.WaitCondition{}, err
	}
	// Name the problem precisely before the generic parser does.
	var peek struct {
		Kind          *string `json:"kind"`
		At            *string `json:"at"`
		Topic         *string `json:"topic"`
		CorrelationID *string `json:"correlation_id"`
	}
	if err := json.Unmarshal(raw, &peek); err != nil {
		return taskflow.WaitCondition{}, argErr("malformed \"wait_condition\": %s; use %s", describeJSONError(err), waitForms)
	}
	if peek.Kind == nil || strings.TrimSpace(*peek.Kind) == "" {
		return taskflow.WaitCondition{}, argErr("\"wait_condition\" needs a \"kind\": timer, external_event or manual; use %s", waitForms)
	}
	if taskflow.WaitKind(*peek.Kind) == taskflow.WaitKindChildren {
		return taskflow.WaitCondition{}, argErr("wait does not wait on children: use the wait_children action (flow_id, need, fail_fast, deadline or timeout_seconds)")
	}
	if taskflow.WaitKind(*peek.Kind) == taskflow.WaitKindExternalEvent {
		if peek.Topic == nil || strings.TrimSpace(*peek.Topic) == "" {
			return taskflow.WaitCondition{}, argErr("an external_event wait needs a non-empty \"topic\" (the name of the event to wait for): topic cannot be empty")
		}
		if peek.CorrelationID == nil || strings.TrimSpace(*peek.CorrelationID) == "" {
			return taskflow.WaitCondition{}, argErr("an external_event wait needs a non-empty \"correlation_id\" (the id that ties the event to this flow): correlation_id cannot be empty")
		}
	}
	cond, err := taskflow.ParseWaitCondition(raw)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), taskflow.ErrInvalidData.Error()+": ")
		return taskflow.WaitCondition{}, argErr("invalid \"wait_condition\": %s; use %s", msg, waitForms)
	}
	if cond.Kind == taskflow.WaitKindTimer {
		if err := t.checkAhead(`the timer's "at"`, `a timer's "at"`, cond.At); err != nil {
			return taskflow.WaitCondition{}, err
		}
	}
	return cond, nil
}

// checkAhead refuses a time a wait resumes at that is not in the future
// or beyond the max horizon; what names it, whose says whose rule it is.
func (t *Tool) checkAhead(what, whose string, at time.Time) error {
	now := t.cfg.now()
	latest := now.Add(t.cfg.maxHorizon)
	switch {
	case !at.After(now):
		return argErr("%s (%s) is not in the future: %s must be in the future, after now (%s)",
			what, at.UTC().Format(time.RFC3339), whose, now.UTC().Format(time.RFC3339))
	case at.After(latest):
		return argErr("%s (%s) is too far ahead: it exceeds the max horizon of %s, so it must be no later than %s",
			what, at.UTC().Format(time.RFC3339), formatHorizon(t.cfg.maxHorizon), latest.UTC().Format(time.RFC3339))
	}
	return nil
}

// formatHorizon writes a duration for the model: whole days as days.
func formatHorizon(d time.Duration) string {
	const day = 24 * time.Hour
	if d >= day && d%day == 0 {
		n := int64(d / day)
		if n == 1 {
			return "1 day"
		}
		return strconv.FormatInt(n, 10) + " days"
	}
	return d.String()
}
