package agenttool

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

// Schedules through the tool: a session schedules its own follow-ups
// (schedule), sees them (list_schedules) and removes them (unschedule).
// Each is a taskflow schedule (Manager.CreateSchedule) whose stored name
// is the session's namespace plus the name the model gave, and whose
// flows are owned by the session and run a controller of the agent's
// namespace, exactly as start's; a session never sees, changes or
// deletes another's schedules.

// MaxSchedulesPerSession is how many schedules one session may keep
// through the tool: a schedule action past it is refused (unschedule one
// first). Two schedule calls of one session racing may each pass the
// check, so a session can end up one or two over; it can never create
// more while over.
const MaxSchedulesPerSession = 100

// MinScheduleEvery is the shortest every_seconds the tool accepts: one
// minute, the grain of a cron expression, so that one session cannot
// make a flow a second.
const MinScheduleEvery = time.Minute

// maxToolScheduleName caps the name a model gives a schedule.
const maxToolScheduleName = 100

// toolScheduleName is what a model may name a schedule.
var toolScheduleName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// scheduleNamespace is the stored-name prefix of a session's schedules:
// "tool/<first 16 bytes of sha256(owner key), hex>/". A hash, since an
// owner key may hold characters a schedule name may not, and a fixed
// length, so no session's prefix is a prefix of another's.
func scheduleNamespace(s Session) string {
	sum := sha256.Sum256([]byte(s.OwnerKey()))
	return "tool/" + hex.EncodeToString(sum[:16]) + "/"
}

// toolSchedule is a schedule as the model sees it.
type toolSchedule struct {
	Name         string `json:"name"`
	Cron         string `json:"cron,omitempty"`
	EverySeconds int64  `json:"every_seconds,omitempty"`
	TimeZone     string `json:"time_zone,omitempty"`
	ControllerID string `json:"controller_id"`
	Goal         string `json:"goal"`
	// NextFire is the next fire time, RFC 3339; empty when paused (by an
	// operator) or done.
	NextFire string `json:"next_fire"`
	Paused   bool   `json:"paused"`
	Fired    int64  `json:"fired"`
	Skipped  int64  `json:"skipped"`
	// LastFlowID is the flow of the last fire, empty before the first.
	LastFlowID string `json:"last_flow_id,omitempty"`
}

func newToolSchedule(ns string, sc *taskflow.Schedule) toolSchedule {
	out := toolSchedule{Name: strings.TrimPrefix(sc.Name, ns), Cron: sc.Cron, EverySeconds: int64(sc.Every / time.Second),
		TimeZone: sc.TimeZone, ControllerID: sc.Flow.ControllerID, Goal: sc.Flow.Goal,
		Paused: sc.Paused, Fired: sc.Fired, Skipped: sc.Skipped}
	if sc.Cron != "" && out.TimeZone == "" {
		out.TimeZone = "UTC"
	}
	if !sc.NextFire.IsZero() {
		out.NextFire = sc.NextFire.UTC().Format(time.RFC3339)
	}
	if sc.LastFire != nil && sc.LastFire.FlowID != uuid.Nil {
		out.LastFlowID = sc.LastFire.FlowID.String()
	}
	return out
}

type scheduleResult struct {
	OK       bool         `json:"ok"`
	Schedule toolSchedule `json:"schedule"`
	// Replaced says the name was in use and the schedule was replaced.
	Replaced bool `json:"replaced,omitempty"`
}

type schedulesResult struct {
	OK        bool           `json:"ok"`
	Count     int            `json:"count"`
	Schedules []toolSchedule `json:"schedules"`
}

type unscheduleResult struct {
	OK      bool   `json:"ok"`
	Name    string `json:"name"`
	Deleted bool   `json:"deleted,omitempty"`
	Error   string `json:"error,omitempty"`
}

// scheduleNameArg reads the name argument of action.
func scheduleNameArg(action, raw string) (string, error) {
	name := strings.TrimSpace(raw)
	switch {
	case name == "":
		return "", argErr("%s needs \"name\" (your name for the schedule, e.g. \"daily-digest\"): name cannot be empty", action)
	case len(name) > maxToolScheduleName:
		return "", argErr("\"name\" is %d bytes; at most %d", len(name), maxToolScheduleName)
	case !toolScheduleName.MatchString(name):
		return "", argErr("\"name\" %q may hold only letters, digits, '.', '_' and '-'", name)
	}
	return name, nil
}

func (t *Tool) schedule(ctx context.Context, s Session, a toolArgs) (json.RawMessage, error) {
	name, err := scheduleNameArg(ActionSchedule, a.Name)
	if err != nil {
		return nil, err
	}
	cron := strings.TrimSpace(a.Cron)
	switch {
	case cron == "" && a.EverySeconds == nil:
		return nil, argErr("schedule needs \"cron\" (five fields \"min hour dom month dow\", e.g. \"0 8 * * MON-FRI\", or @hourly, @daily, @weekly) or \"every_seconds\" (at least %d)", int(MinScheduleEvery/time.Second))
	case cron != "" && a.EverySeconds != nil:
		return nil, argErr("schedule takes \"cron\" or \"every_seconds\", not both")
	case a.EverySeconds != nil && (*a.EverySeconds < int64(MinScheduleEvery/time.Second) || *a.EverySeconds > 366*24*3600):
		return nil, argErr("\"every_seconds\" is %d; it must be %d to %d", *a.EverySeconds, int(MinScheduleEvery/time.Second), 366*24*3600)
	case a.EverySeconds != nil && strings.TrimSpace(a.TimeZone) != "":
		return nil, argErr("\"time_zone\" goes with \"cron\" only; every_seconds is real time")
	}
	controller, goal := strings.TrimSpace(a.ControllerID), strings.TrimSpace(a.Goal)
	if controller == "" {
		return nil, argErr("schedule needs \"controller_id\" (the kind of job each fire starts, e.g. \"kate/inbox-triage\"): controller_id cannot be empty")
	}
	if goal == "" {
		return nil, argErr("schedule needs \"goal\" (what each fire's flow is meant to achieve): goal cannot be empty")
	}
	if err := t.cfg.controllers(s, controller); err != nil {
		return nil, err
	}
	state, err := objectArg("state", a.State)
	if err != nil {
		return nil, err
	}
	step := strings.TrimSpace(a.CurrentStep)
	if step == "" {
		step = "init"
	}
	ns := scheduleNamespace(s)
	in := taskflow.ScheduleInput{
		Name: ns + name, Cron: cron, TimeZone: strings.TrimSpace(a.TimeZone),
		Flow: taskflow.CreateManagedInput{ControllerID: controller, Goal: goal, OwnerSessionKey: s.OwnerKey(),
			RequesterOrigin: strings.TrimSpace(s.SessionID), CurrentStep: step},
	}
	if state != nil {
		in.Flow.State = state
	}
	if a.EverySeconds != nil {
		in.Every = time.Duration(*a.EverySeconds) * time.Second
	}
	mine, err := t.sessionSchedules(ctx, s, MaxSchedulesPerSession)
	if err != nil {
		return nil, err
	}
	replaced := false
	for _, sc := range mine {
		if sc.Name == in.Name {
			// An operator's pause stays: the model replaces what it set.
			replaced, in.Paused, in.Note = true, sc.Paused, sc.Note
		}
	}
	if !replaced && len(mine) >= MaxSchedulesPerSession {
		return nil, argErr("this session has %d schedules, the most it may keep; unschedule one first (list_schedules shows them)", len(mine))
	}
	var sc *taskflow.Schedule
	if replaced {
		sc, err = t.m.UpdateSchedule(ctx, in, 0)
	} else {
		sc, err = t.m.CreateSchedule(ctx, in)
	}
	if err != nil {
		return nil, t.scheduleError(ns, err)
	}
	return encodeResult(scheduleResult{OK: true, Schedule: newToolSchedule(ns, sc), Replaced: replaced})
}

// scheduleError words the manager's refusal of a schedule for the model,
// without the session's namespace.
func (t *Tool) scheduleError(ns string, err error) error {
	msg := strings.ReplaceAll(err.Error(), ns, "")
	for _, p := range []string{"taskflow: ", taskflow.ErrInvalidData.Error() + ": "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	switch {
	case errors.Is(err, taskflow.ErrInvalidData):
		return fmt.Errorf("%w: %s (%w)", ErrArgs, msg, taskflow.ErrInvalidData)
	case errors.Is(err, taskflow.ErrAlreadyExists), errors.Is(err, taskflow.ErrNotFound):
		return fmt.Errorf("%w: the schedule changed meanwhile (%s); call again", ErrArgs, msg)
	}
	return fmt.Errorf("taskflow tool: schedule failed: %s", msg)
}

// sessionSchedules returns the session's schedules, at most limit+1 of
// them: the names after its namespace prefix, in order, while they
// carry it. Each is checked to be the session's (its flows' owner).
func (t *Tool) sessionSchedules(ctx context.Context, s Session, limit int) ([]*taskflow.Schedule, error) {
	ns := scheduleNamespace(s)
	cursor := strings.TrimSuffix(ns, "/") // every name of the namespace sorts after it
	var out []*taskflow.Schedule
	for len(out) <= limit {
		page, next, err := t.m.ListSchedules(ctx, taskflow.WithLimit(limit+1-len(out)), taskflow.WithCursor(cursor))
		if err != nil {
			return nil, fmt.Errorf("taskflow tool: reading the schedules: %w", err)
		}
		for _, sc := range page {
			if !strings.HasPrefix(sc.Name, ns) {
				if sc.Name < ns {
					continue // "tool/<hash>-x" and the like sort before the namespace
				}
				return out, nil
			}
			if sc.Flow.OwnerSessionKey == s.OwnerKey() {
				out = append(out, sc)
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	return out, nil
}

func (t *Tool) listSchedules(ctx context.Context, s Session) (json.RawMessage, error) {
	mine, err := t.sessionSchedules(ctx, s, MaxSchedulesPerSession)
	if err != nil {
		return nil, err
	}
	ns := scheduleNamespace(s)
	out := schedulesResult{OK: true, Schedules: make([]toolSchedule, 0, len(mine))}
	for _, sc := range mine {
		out.Schedules = append(out.Schedules, newToolSchedule(ns, sc))
	}
	out.Count = len(out.Schedules)
	return encodeResult(out)
}

func (t *Tool) unschedule(ctx context.Context, s Session, a toolArgs) (json.RawMessage, error) {
	name, err := scheduleNameArg(ActionUnschedule, a.Name)
	if err != nil {
		return nil, err
	}
	ns := scheduleNamespace(s)
	sc, err := t.m.GetSchedule(ctx, ns+name, 1)
	switch {
	case errors.Is(err, taskflow.ErrNotFound):
		return encodeResult(unscheduleResult{OK: false, Name: name, Error: "not_found"})
	case err != nil:
		return nil, t.scheduleError(ns, err)
	case sc.Flow.OwnerSessionKey != s.OwnerKey(): // not made through the tool by s
		return encodeResult(unscheduleResult{OK: false, Name: name, Error: "not_found"})
	}
	err = t.m.DeleteSchedule(ctx, ns+name)
	switch {
	case errors.Is(err, taskflow.ErrNotFound):
		return encodeResult(unscheduleResult{OK: false, Name: name, Error: "not_found"})
	case err != nil:
		return nil, t.scheduleError(ns, err)
	}
	return encodeResult(unscheduleResult{OK: true, Name: name, Deleted: true})
}
