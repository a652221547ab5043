package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/clitext"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/schedview"
)

var scheduleVerb = &verb{
	name:    "schedule",
	args:    "<action> [<name>] [flags]",
	summary: "manage schedules: flows started on a calendar, exactly once",
	help: `Manage the flow space's schedules. A schedule starts a flow on a calendar (a
cron expression in a time zone, or a fixed interval); the engines' ticks
('taskflow run', 'taskflow tick') make its fires, one flow per fire however
many engines run. 'taskflow help schedule <action>' prints an action's flags.

  create <name>    --cron EXPR | --every D, the flow (--controller, --goal,
                   --owner, --state JSON), policies
  update <name>    change the flags given; the rest stays
  pause <name>     stop its fires (--note says why)
  resume <name>    fire again from the next fire time after now
  delete <name>    delete it and its history (its flows stay)
  list             every schedule: next fire, policies, counters
  show <name>      one schedule, its next fire times and recent fires
  trigger <name>   make one flow now, whatever the policies
  backfill <name>  make the fires of a past range (--from, --to)`,
	run:    cmdSchedule,
	nested: scheduleActions,
}

// scheduleActions are the actions of 'taskflow schedule'.
func scheduleActions() []*verb {
	return []*verb{
		{name: "schedule create", args: "<name> (--cron EXPR | --every D) [flags]",
			summary: "create a schedule",
			help: `Create a schedule. Exactly one of --cron (five fields "min hour dom month dow",
or @hourly, @daily, @weekly, @monthly, @yearly) and --every (an interval of
at least 1s). Each fire creates a flow of --controller with --goal, owned by
--owner, whose state is --state (a JSON object, default {}) plus a
"schedule" key naming the schedule and the fire time. --key (repeatable)
and --priority give the flows concurrency keys and a priority ('taskflow
limits').

  taskflow schedule create triage --cron '0 8 * * MON-FRI' --tz Europe/Madrid \
    --controller inbox/triage --goal 'triage the inbox' --owner agent:ops`,
			run: cmdScheduleCreate},
		{name: "schedule update", args: "<name> [flags] [--revision N]",
			summary: "change a schedule",
			help: `Change a schedule: the flags given replace those fields, the others keep
their values (--cron replaces --every and the reverse). With --revision, the
update is refused unless the schedule is at that revision. A change of the
timing or of --paused moves the next fire to the first fire time after now.`,
			run: cmdScheduleUpdate},
		{name: "schedule pause", args: "<name> [--note TEXT]", summary: "pause a schedule",
			help: `Pause a schedule: it fires nothing until resumed. --note (at most 1 KiB)
says why; pausing a paused schedule changes its note.`,
			run: cmdSchedulePause},
		{name: "schedule resume", args: "<name>", summary: "resume a paused schedule",
			help: `Resume a paused schedule: its next fire is the first fire time after now;
the fires missed while paused are not made.`,
			run: cmdScheduleResume},
		{name: "schedule delete", args: "<name>", summary: "delete a schedule",
			help: `Delete a schedule and its history. The flows it made stay.`,
			run:  cmdScheduleDelete},
		{name: "schedule list", args: "[--limit N] [--cursor C]", summary: "list schedules",
			help: `List the schedules by name: when they fire, the next fire time, the overlap
and catch-up policies, paused or done, and how many fires made a flow or
were skipped.`,
			run: cmdScheduleList},
		{name: "schedule show", args: "<name> [--next N] [--recent N]", summary: "show a schedule",
			help: `Show a schedule: its timing, policies and flow, its next N fire times, and
its recent fires and skips, newest first, with the flow each fire made and
that flow's status now.`,
			run: cmdScheduleShow},
		{name: "schedule trigger", args: "<name>", summary: "make one flow of a schedule now",
			help: `Make one flow of the schedule now, whatever its overlap policy, paused or
done. It becomes the schedule's previous flow (for --overlap) and is
recorded with reason "trigger".`,
			run: cmdScheduleTrigger},
		{name: "schedule backfill", args: "<name> --from TIME --to TIME", summary: "make the fires of a past range",
			help: `Make the flows of every fire time of the schedule in [--from, --to) (RFC
3339 times; at most 1000 fires), whatever its overlap policy. A fire made
before (by an engine or an earlier backfill) keeps its one flow.`,
			run: cmdScheduleBackfill},
	}
}

func cmdSchedule(ctx context.Context, c *cli, args []string) error {
	var names []string
	for _, a := range c.v.nested() {
		names = append(names, strings.TrimPrefix(a.name, "schedule "))
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		c.flags()
		if _, err := c.parse(args); err != nil {
			return err
		}
		return usagef("schedule: missing action (%s)", strings.Join(names, ", "))
	}
	for _, a := range c.v.nested() {
		if a.name == "schedule "+args[0] {
			c.v = a
			return a.run(ctx, c, args[1:])
		}
	}
	msg := fmt.Sprintf("schedule: unknown action %q", args[0])
	if s := suggest(args[0], names); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return usagef("%s (see 'taskflow help schedule')", msg)
}

// scheduleFlags are the flags of create and update.
type scheduleFlags struct {
	cron, every, tz, start, end, jitter, overlap, catchUp string
	window, note                                          string
	catchUpMax                                            int
	paused                                                bool
	controller, goal, owner, step, origin, state          string
	keys                                                  keyList
	priority                                              int
}

// keyList is a repeatable flag: each use adds a key; an empty value
// clears the keys given before it.
type keyList []string

func (k *keyList) String() string { return strings.Join(*k, ",") }

func (k *keyList) Set(s string) error {
	if s == "" {
		*k = keyList{}
		return nil
	}
	*k = append(*k, s)
	return nil
}

func (f *scheduleFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.cron, "cron", "", "cron `expression`: five fields or @hourly, @daily, ... (exactly one of --cron and --every)")
	fs.StringVar(&f.every, "every", "", "fixed `interval`, at least 1s (7d, 36h, 90m, 1s)")
	fs.StringVar(&f.tz, "tz", "", "IANA time `zone` of --cron (default UTC)")
	fs.StringVar(&f.start, "start", "", "no fire before this `time` (RFC 3339); --every's anchor")
	fs.StringVar(&f.end, "end", "", "no fire at or after this `time` (RFC 3339)")
	fs.StringVar(&f.jitter, "jitter", "", "delay each fire by up to this `duration` (at most 1h and the interval)")
	fs.StringVar(&f.overlap, "overlap", "", "`policy` while the previous flow runs: skip, buffer_one, allow_all or cancel_previous (default skip)")
	fs.StringVar(&f.catchUp, "catch-up", "", "`policy` for missed fires after downtime: none, last or all (default last)")
	fs.StringVar(&f.window, "catch-up-window", "", "with --catch-up all, missed fires older than this `duration` are skipped (default 1h, at most 7d)")
	fs.IntVar(&f.catchUpMax, "catch-up-max", 0, "with --catch-up all, at most `N` missed fires, the most recent (default 100, at most 1000)")
	fs.BoolVar(&f.paused, "paused", false, "create it paused (update: --paused=false resumes)")
	fs.StringVar(&f.note, "note", "", "`text` saying why it is paused (at most 1 KiB)")
	fs.StringVar(&f.controller, "controller", "", "controller `id` of the flow each fire creates")
	fs.StringVar(&f.goal, "goal", "", "goal `text` of the flow each fire creates")
	fs.StringVar(&f.owner, "owner", "", "owner session `key` of the flow each fire creates")
	fs.StringVar(&f.step, "step", "", "current `step` of the flow each fire creates")
	fs.StringVar(&f.origin, "origin", "", "requester `origin` of the flow each fire creates")
	fs.StringVar(&f.state, "state", "", "initial state of the flow each fire creates: a JSON `object`")
	fs.Var(&f.keys, "key", "a concurrency `key` of the flow each fire creates (repeat for up to 4; the first names its "+
		"fair group; update: the keys given replace the flow's, --key '' clears them); see 'taskflow limits'")
	fs.IntVar(&f.priority, "priority", 0, "`priority` of the flow each fire creates, 0 to 9, the highest claimed first")
}

// apply sets in's fields from the flags set on the command line.
func (f *scheduleFlags) apply(c *cli, in *taskflow.ScheduleInput) error {
	set := c.isSet
	dur := func(name, s string, p *time.Duration) error {
		d, err := parseDuration(s)
		if err != nil {
			return usagef("%s: --%s %q: %v", c.v.name, name, s, err)
		}
		*p = d
		return nil
	}
	tm := func(name, s string, p *time.Time) error {
		if s == "" {
			*p = time.Time{}
			return nil
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return usagef("%s: --%s %q is not an RFC 3339 time (e.g. 2026-01-02T08:00:00Z)", c.v.name, name, s)
		}
		*p = t
		return nil
	}
	if set("cron") && set("every") {
		return usagef("%s: give --cron or --every, not both", c.v.name)
	}
	if set("cron") {
		in.Cron, in.Every = f.cron, 0
	}
	if set("every") {
		in.Cron, in.TimeZone = "", ""
		if err := dur("every", f.every, &in.Every); err != nil {
			return err
		}
	}
	if set("tz") {
		in.TimeZone = f.tz
	}
	for _, x := range []struct {
		name, s string
		p       *time.Time
	}{{"start", f.start, &in.Start}, {"end", f.end, &in.End}} {
		if set(x.name) {
			if err := tm(x.name, x.s, x.p); err != nil {
				return err
			}
		}
	}
	if set("jitter") {
		if err := dur("jitter", f.jitter, &in.Jitter); err != nil {
			return err
		}
	}
	if set("catch-up-window") {
		if err := dur("catch-up-window", f.window, &in.CatchUpWindow); err != nil {
			return err
		}
	}
	if set("overlap") {
		switch p := taskflow.OverlapPolicy(f.overlap); p {
		case taskflow.OverlapSkip, taskflow.OverlapBufferOne, taskflow.OverlapAllowAll, taskflow.OverlapCancelPrevious:
			in.Overlap = p
		default:
			return usagef("%s: --overlap %q: want skip, buffer_one, allow_all or cancel_previous", c.v.name, f.overlap)
		}
	}
	if set("catch-up") {
		switch p := taskflow.CatchUpPolicy(f.catchUp); p {
		case taskflow.CatchUpNone, taskflow.CatchUpLast, taskflow.CatchUpAll:
			in.CatchUp = p
		default:
			return usagef("%s: --catch-up %q: want none, last or all", c.v.name, f.catchUp)
		}
	}
	if set("catch-up-max") {
		in.CatchUpMax = f.catchUpMax
	}
	if set("paused") {
		in.Paused = f.paused
	}
	if set("note") {
		in.Note = f.note
	}
	for _, x := range []struct {
		name, v string
		p       *string
	}{{"controller", f.controller, &in.Flow.ControllerID}, {"goal", f.goal, &in.Flow.Goal},
		{"owner", f.owner, &in.Flow.OwnerSessionKey}, {"step", f.step, &in.Flow.CurrentStep},
		{"origin", f.origin, &in.Flow.RequesterOrigin}} {
		if set(x.name) {
			*x.p = x.v
		}
	}
	if set("key") {
		in.Flow.Concurrency = nil
		if len(f.keys) > 0 {
			in.Flow.Concurrency = []string(f.keys)
		}
	}
	if set("priority") {
		if f.priority < 0 || f.priority > 9 {
			return usagef("%s: --priority %d is outside 0..9", c.v.name, f.priority)
		}
		in.Flow.Priority = f.priority
	}
	if set("state") {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal([]byte(f.state), &obj); err != nil || obj == nil {
			return usagef("%s: --state is not a JSON object: %s", c.v.name, f.state)
		}
		in.Flow.State = json.RawMessage(f.state)
	}
	return nil
}

// scheduleFailure makes the library's refusal of bad input a usage error
// (exit status 2), and a missing schedule a plain message.
func scheduleFailure(name string, err error) error {
	switch {
	case errors.Is(err, taskflow.ErrNotFound):
		return fmt.Errorf("schedule %q not found", name)
	case errors.Is(err, taskflow.ErrInvalidData):
		return usagef("%s", cleanError(err))
	case errors.Is(err, taskflow.ErrAlreadyExists):
		return fmt.Errorf("schedule %q exists already (change it with 'taskflow schedule update')", name)
	}
	return err
}

func cmdScheduleCreate(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var f scheduleFlags
	f.register(fs)
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos, "<name>"); err != nil {
		return err
	}
	if !c.isSet("cron") && !c.isSet("every") {
		return usagef("schedule create: give --cron EXPR or --every D")
	}
	for _, n := range []string{"controller", "goal", "owner"} {
		if !c.isSet(n) {
			return usagef("schedule create: --%s is required (the flow each fire creates)", n)
		}
	}
	in := taskflow.ScheduleInput{Name: pos[0]}
	if err := f.apply(c, &in); err != nil {
		return err
	}
	m, err := c.connect(ctx)
	if err != nil {
		return err
	}
	sc, err := m.CreateSchedule(ctx, in)
	if err != nil {
		return scheduleFailure(in.Name, err)
	}
	return c.printSchedule(sc, "created")
}

func cmdScheduleUpdate(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var f scheduleFlags
	f.register(fs)
	rev := fs.Int64("revision", 0, "refuse the update unless the schedule is at this `revision`")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos, "<name>"); err != nil {
		return err
	}
	if c.fs.NFlag() == 0 || onlyCommon(c) {
		return usagef("schedule update: nothing to change (give the flags to change)")
	}
	m, err := c.connectExisting(ctx)
	if err != nil {
		return err
	}
	sc, err := m.GetSchedule(ctx, pos[0], 1)
	if err != nil {
		return scheduleFailure(pos[0], err)
	}
	in := sc.ScheduleInput
	if err := f.apply(c, &in); err != nil {
		return err
	}
	want := *rev
	if want == 0 {
		want = sc.Revision // the revision read: a change meanwhile is refused
	}
	sc, err = m.UpdateSchedule(ctx, in, want)
	if errors.Is(err, taskflow.ErrRevisionMismatch) {
		return errors.New(cleanError(err))
	}
	if err != nil {
		return scheduleFailure(pos[0], err)
	}
	return c.printSchedule(sc, "updated")
}

// onlyCommon reports whether only common flags (and --revision) were set.
func onlyCommon(c *cli) bool {
	only := true
	c.fs.Visit(func(f *flag.Flag) {
		if !c.common[f.Name] && f.Name != "revision" {
			only = false
		}
	})
	return only
}

func cmdSchedulePause(ctx context.Context, c *cli, args []string) error {
	note := c.flags().String("note", "", "`text` saying why (at most 1 KiB)")
	m, name, err := c.scheduleArg(ctx, args)
	if err != nil {
		return err
	}
	sc, err := m.PauseSchedule(ctx, name, *note)
	if err != nil {
		return scheduleFailure(name, err)
	}
	return c.printSchedule(sc, "paused")
}

func cmdScheduleResume(ctx context.Context, c *cli, args []string) error {
	c.flags()
	m, name, err := c.scheduleArg(ctx, args)
	if err != nil {
		return err
	}
	sc, err := m.ResumeSchedule(ctx, name)
	if err != nil {
		return scheduleFailure(name, err)
	}
	return c.printSchedule(sc, "resumed")
}

func cmdScheduleDelete(ctx context.Context, c *cli, args []string) error {
	c.flags()
	m, name, err := c.scheduleArg(ctx, args)
	if err != nil {
		return err
	}
	if err := m.DeleteSchedule(ctx, name); err != nil {
		return scheduleFailure(name, err)
	}
	if c.json {
		return writeJSON(c.stdout, map[string]any{"name": name, "deleted": true})
	}
	_, err = fmt.Fprintf(c.stdout, "schedule %s deleted (its flows stay)\n", name)
	return err
}

// scheduleArg parses the flags (registered on c.fs before) and the one
// <name> argument, runs the checks of the flags' values, and connects to an existing flow space.
func (c *cli) scheduleArg(ctx context.Context, args []string, checks ...func() error) (*taskflow.Manager, string, error) {
	pos, err := c.parse(args)
	if err != nil {
		return nil, "", err
	}
	if err := c.wantArgs(pos, "<name>"); err != nil {
		return nil, "", err
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return nil, "", err
		}
	}
	m, err := c.connectExisting(ctx)
	if err != nil {
		return nil, "", err
	}
	return m, pos[0], nil
}

// printSchedule reports a changed schedule: one line, or it as JSON.
func (c *cli) printSchedule(sc *taskflow.Schedule, what string) error {
	if c.json {
		return writeJSON(c.stdout, sc)
	}
	next := "next fire " + fmtTime(sc.NextFire)
	switch {
	case sc.Paused:
		next = "paused"
	case sc.Done:
		next = "done"
	}
	_, err := fmt.Fprintf(c.stdout, "schedule %s %s (%s, revision %d)\n", sc.Name, what, next, sc.Revision)
	return err
}

func orDefault[T ~string](v, def T) T {
	if v == "" {
		return def
	}
	return v
}

// scheduleList is the JSON form of a page of schedules.
type scheduleList struct {
	Schedules []*taskflow.Schedule `json:"schedules"`
	Next      string               `json:"next,omitempty"`
}

func cmdScheduleList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	limit := fs.Int("limit", 100, "page size, 1.."+fmt.Sprint(maxListLimit))
	cursor := fs.String("cursor", "", "continue after the page that printed this `cursor`")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos); err != nil {
		return err
	}
	if *limit < 1 || *limit > maxListLimit {
		return usagef("--limit %d is outside 1..%d", *limit, maxListLimit)
	}
	m, err := c.connectExisting(ctx)
	if err != nil {
		return err
	}
	list, next, err := m.ListSchedules(ctx, taskflow.WithLimit(*limit), taskflow.WithCursor(*cursor))
	if errors.Is(err, taskflow.ErrInvalidData) && *cursor != "" {
		return usagef("--cursor %q is not a schedule list cursor (pass the one a previous page printed)", *cursor)
	}
	if err != nil {
		return err
	}
	if c.json {
		if list == nil {
			list = []*taskflow.Schedule{}
		}
		return writeJSON(c.stdout, scheduleList{Schedules: list, Next: next})
	}
	if len(list) == 0 {
		_, err := fmt.Fprintln(c.stdout, "no schedules")
		return err
	}
	now := time.Now()
	tw := clitext.NewTable(c.stdout)
	fmt.Fprintln(tw, "NAME\tWHEN\tNEXT FIRE\tOVERLAP\tCATCH-UP\tSTATE\tFIRED\tSKIPPED")
	for _, sc := range list {
		nextFire := "-"
		if !sc.NextFire.IsZero() {
			nextFire = fmtTime(sc.NextFire) + " (" + fmtRelative(sc.NextFire, now) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", sc.Name, schedview.When(sc, fmtDuration), nextFire,
			orDefault(sc.Overlap, taskflow.OverlapSkip), orDefault(sc.CatchUp, taskflow.CatchUpLast), schedview.State(sc), sc.Fired, sc.Skipped)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if next != "" {
		_, err = fmt.Fprintf(c.stdout, "next: --cursor %s\n", next)
	}
	return err
}

// scheduleShow is the JSON form of 'schedule show': the schedule with
// the status of each recent fire's flow.
type scheduleShow struct {
	*taskflow.Schedule
	FlowStatus map[string]taskflow.FlowStatus `json:"flow_status,omitempty"`
}

func cmdScheduleShow(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	next := fs.Int("next", 10, "how many next fire `times`, 1..100")
	recent := fs.Int("recent", 20, "how many recent fires, 0..100")
	m, name, err := c.scheduleArg(ctx, args, func() error {
		if *next < 1 || *next > 100 || *recent < 0 || *recent > 100 {
			return usagef("schedule show: --next must be within 1..100 and --recent within 0..100")
		}
		return nil
	})
	if err != nil {
		return err
	}
	sc, err := m.GetSchedule(ctx, name, *next)
	if err != nil {
		return scheduleFailure(name, err)
	}
	if len(sc.Recent) > *recent {
		sc.Recent = sc.Recent[:*recent]
	}
	status := map[string]taskflow.FlowStatus{}
	for _, f := range sc.Recent {
		if f.FlowID == uuid.Nil {
			continue
		}
		if fl, err := m.Get(ctx, f.FlowID); err == nil {
			status[f.FlowID.String()] = fl.Status
		} else if !errors.Is(err, taskflow.ErrNotFound) {
			return err
		}
	}
	if c.json {
		return writeJSON(c.stdout, scheduleShow{Schedule: sc, FlowStatus: status})
	}
	return printScheduleShow(c.stdout, sc, status)
}

func printScheduleShow(w io.Writer, sc *taskflow.Schedule, status map[string]taskflow.FlowStatus) error {
	now := time.Now()
	tw := clitext.NewTable(w)
	fmt.Fprintf(tw, "name\t%s\n", sc.Name)
	fmt.Fprintf(tw, "id\t%s\n", sc.ID)
	fmt.Fprintf(tw, "revision\t%d\n", sc.Revision)
	fmt.Fprintf(tw, "when\t%s\n", schedview.When(sc, fmtDuration))
	if !sc.Start.IsZero() || !sc.End.IsZero() {
		fmt.Fprintf(tw, "between\t%s and %s\n", fmtTime(sc.Start), fmtTime(sc.End))
	}
	if sc.Jitter > 0 {
		fmt.Fprintf(tw, "jitter\t%s\n", fmtDuration(sc.Jitter))
	}
	fmt.Fprintf(tw, "overlap\t%s\n", orDefault(sc.Overlap, taskflow.OverlapSkip))
	cu := string(orDefault(sc.CatchUp, taskflow.CatchUpLast))
	if sc.CatchUp == taskflow.CatchUpAll {
		cu += fmt.Sprintf(" (window %s, max %d)", fmtDuration(sc.CatchUpWindow), sc.CatchUpMax)
	}
	fmt.Fprintf(tw, "catch-up\t%s\n", cu)
	st := schedview.State(sc)
	if sc.Paused && sc.Note != "" {
		st += ": " + sc.Note
	}
	fmt.Fprintf(tw, "status\t%s\n", st)
	fmt.Fprintf(tw, "fired\t%d\n", sc.Fired)
	fmt.Fprintf(tw, "skipped\t%d\n", sc.Skipped)
	fmt.Fprintf(tw, "flow\t%s: %s (owner %s)\n", sc.Flow.ControllerID, sc.Flow.Goal, sc.Flow.OwnerSessionKey)
	if len(sc.Flow.Concurrency) > 0 {
		fmt.Fprintf(tw, "flow concurrency keys\t%s\n", strings.Join(sc.Flow.Concurrency, ", "))
	}
	if sc.Flow.Priority != 0 {
		fmt.Fprintf(tw, "flow priority\t%d\n", sc.Flow.Priority)
	}
	if raw, ok := sc.Flow.State.(json.RawMessage); ok && len(raw) > 0 {
		fmt.Fprintf(tw, "flow state\t%s\n", clitext.CompactJSON(raw))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "next fires:")
	if sc.Paused || sc.Done || len(sc.Upcoming) == 0 {
		fmt.Fprintln(w, "  none")
	}
	if !sc.Paused && !sc.Done {
		for _, t := range sc.Upcoming {
			fmt.Fprintf(w, "  %s (%s)\n", fmtTime(t), fmtRelative(t, now))
		}
	}
	fmt.Fprintln(w, "recent fires:")
	if len(sc.Recent) == 0 {
		fmt.Fprintln(w, "  none")
		return nil
	}
	tw = clitext.NewTable(w)
	fmt.Fprintln(tw, "  AT\tOUTCOME\tREASON\tLAG\tFLOW\tSTATUS")
	for _, f := range sc.Recent {
		flow, st := "-", "-"
		if f.FlowID != uuid.Nil {
			flow, st = f.FlowID.String(), "gone"
			if s, ok := status[f.FlowID.String()]; ok {
				st = string(s)
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", fmtTimeMs(f.At), f.Outcome, orDefault(f.Reason, "-"),
			fmtDuration(f.Lag.Round(time.Millisecond)), flow, st)
	}
	return tw.Flush()
}

func cmdScheduleTrigger(ctx context.Context, c *cli, args []string) error {
	c.flags()
	m, name, err := c.scheduleArg(ctx, args)
	if err != nil {
		return err
	}
	f, err := m.TriggerSchedule(ctx, name)
	if err != nil {
		return scheduleFailure(name, err)
	}
	if c.json {
		return writeJSON(c.stdout, f)
	}
	_, err = fmt.Fprintf(c.stdout, "schedule %s triggered: flow %s (status %s)\n", name, f.ID, f.Status)
	return err
}

func cmdScheduleBackfill(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	from := fs.String("from", "", "first `time` of the range (RFC 3339, included; required)")
	to := fs.String("to", "", "end `time` of the range (RFC 3339, excluded; required)")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos, "<name>"); err != nil {
		return err
	}
	var tf, tt time.Time
	for _, x := range []struct {
		name, s string
		p       *time.Time
	}{{"from", *from, &tf}, {"to", *to, &tt}} {
		if x.s == "" {
			return usagef("schedule backfill: --%s TIME is required", x.name)
		}
		if *x.p, err = time.Parse(time.RFC3339Nano, x.s); err != nil {
			return usagef("schedule backfill: --%s %q is not an RFC 3339 time (e.g. 2026-01-02T08:00:00Z)", x.name, x.s)
		}
	}
	m, err := c.connectExisting(ctx)
	if err != nil {
		return err
	}
	fires, err := m.BackfillSchedule(ctx, pos[0], tf, tt)
	if err != nil {
		return scheduleFailure(pos[0], err)
	}
	if c.json {
		if fires == nil {
			fires = []taskflow.ScheduleFire{}
		}
		return writeJSON(c.stdout, fires)
	}
	fmt.Fprintf(c.stdout, "schedule %s: %d fires backfilled\n", pos[0], len(fires))
	tw := clitext.NewTable(c.stdout)
	for _, f := range fires {
		fmt.Fprintf(tw, "  %s\t%s\n", fmtTimeMs(f.At), f.FlowID)
	}
	return tw.Flush()
}
