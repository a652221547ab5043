package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/childview"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/clitext"
)

// showEvents is how many events show prints.
const showEvents = 20

// showChildren is how many of a parent's children show lists.
const showChildren = 20

// flowDetail is the JSON output of show.
type flowDetail struct {
	Flow   *taskflow.Flow       `json:"flow"`
	Steps  []*taskflow.FlowStep `json:"steps"`
	Events []jsonEvent          `json:"events"`
	// Lease is who holds the flow, nil when no worker does.
	Lease *taskflow.Lease `json:"lease"`
	// Children is a parent's first children and its join; nil for a flow
	// that never started a child. A child's parent is the flow's
	// parent_id and child_key.
	Children *childrenDetail `json:"children,omitempty"`
}

// childrenDetail is what show says of a parent's children.
type childrenDetail struct {
	// Total counts the children started (Flow.Children).
	Total int `json:"total"`
	// First are the first children in start order, at most showChildren.
	First []taskflow.Child `json:"first"`
	// More is how many children First leaves out.
	More int `json:"more"`
	// Join is the parent's join while it waits on its children, with
	// the count of its children's outcomes.
	Join *childview.Join `json:"join,omitempty"`
}

var showVerb = &verb{
	name:    "show",
	args:    "<id>",
	summary: "show a flow, its lease, state, steps and latest events",
	help: `Show a flow: its fields, its wait in words (a timer's due time and how far
off it is), who holds its lease and until when, its state, its steps and its
latest 20 events. Search attributes show as name=value pairs; concurrency keys and
priority show when the flow has them (see 'taskflow limits'). A child names its parent and its key among the parent's
children; a parent lists its first 20 children (key, id, status, whether the
parent has its outcome) and, while it waits on them, its join: what it needs,
fail fast, its deadline and how many children finished, failed, were
cancelled or are pending.`,
	run: cmdShow,
}

func cmdShow(ctx context.Context, c *cli, args []string) error {
	c.flags()
	m, id, err := c.flowArg(ctx, args)
	if err != nil {
		return err
	}
	f, err := getFlow(ctx, m, id)
	if err != nil {
		return err
	}
	steps, err := m.ListSteps(ctx, id)
	if err != nil {
		return err
	}
	events, err := m.ListEvents(ctx, id, showEvents)
	if err != nil {
		return err
	}
	lease, err := m.LeaseOf(ctx, id)
	if err != nil {
		return err
	}
	kids, err := childrenOf(ctx, m, f)
	if err != nil {
		return err
	}
	if c.json {
		return writeJSON(c.stdout, flowDetail{Flow: f, Steps: steps, Events: jsonEvents(events), Lease: lease, Children: kids})
	}
	now := time.Now()
	printFlow(c.stdout, f, lease, now)
	fmt.Fprintln(c.stdout)
	if kids != nil {
		printChildren(c.stdout, kids, now)
		fmt.Fprintln(c.stdout)
	}
	printSteps(c.stdout, steps)
	fmt.Fprintln(c.stdout)
	fmt.Fprintf(c.stdout, "events (latest %d, newest first):\n", showEvents)
	return printEvents(c.stdout, events, "  ")
}

// flowArg parses the flags and the one flow id argument, then connects.
func (c *cli) flowArg(ctx context.Context, args []string) (*taskflow.Manager, uuid.UUID, error) {
	pos, err := c.parse(args)
	if err != nil {
		return nil, uuid.Nil, err
	}
	return c.flowArgParsed(ctx, pos)
}

// flowArgParsed reads the one flow id argument, then connects.
func (c *cli) flowArgParsed(ctx context.Context, pos []string) (*taskflow.Manager, uuid.UUID, error) {
	if err := c.wantArgs(pos, "<id>"); err != nil {
		return nil, uuid.Nil, err
	}
	id, err := parseID(pos[0])
	if err != nil {
		return nil, uuid.Nil, err
	}
	m, err := c.connectExisting(ctx)
	return m, id, err
}

// getFlow reads a flow, saying plainly when it does not exist.
func getFlow(ctx context.Context, m *taskflow.Manager, id uuid.UUID) (*taskflow.Flow, error) {
	f, err := m.Get(ctx, id)
	if errors.Is(err, taskflow.ErrNotFound) {
		return nil, notFound(id)
	}
	return f, err
}

func notFound(id uuid.UUID) error { return fmt.Errorf("flow %s not found", id) }

// childrenOf reads a parent's first children and, while it waits on
// them, its join; nil for a flow that never started a child.
func childrenOf(ctx context.Context, m *taskflow.Manager, f *taskflow.Flow) (*childrenDetail, error) {
	if f.Children == 0 {
		return nil, nil
	}
	first, next, err := m.ListChildren(ctx, f.ID, taskflow.WithLimit(showChildren))
	if err != nil {
		return nil, fmt.Errorf("listing the children of %s: %w", f.ID, err)
	}
	d := &childrenDetail{Total: f.Children, First: first}
	if d.First == nil {
		d.First = []taskflow.Child{}
	}
	if d.Join, err = childview.Progress(ctx, m, f); err != nil {
		return nil, err
	}
	if d.Join != nil {
		// The join read every child, after f: its count is the newer.
		d.Total = d.Join.Total
	}
	if next != "" {
		// At least one more: a child started after f was read is not in
		// f's count.
		d.More = max(d.Total-len(first), 1)
	}
	return d, nil
}

// printChildren prints a parent's join and its first children.
func printChildren(w io.Writer, d *childrenDetail, now time.Time) {
	if j := d.Join; j != nil {
		deadline := "none"
		if !j.Deadline.IsZero() {
			deadline = fmt.Sprintf("%s (%s)", fmtTimeMs(j.Deadline), fmtRelative(j.Deadline, now))
		}
		fmt.Fprintf(w, "join: need %s, fail_fast %v, deadline %s\n", j.NeedText(), j.FailFast, deadline)
		fmt.Fprintf(w, "  finished %d, failed %d, cancelled %d, pending %d\n\n", j.Finished, j.Failed, j.Cancelled, j.Pending)
	}
	fmt.Fprintf(w, "children (%d, in start order):\n", d.Total)
	tw := clitext.NewTable(w)
	fmt.Fprintln(tw, "  KEY\tID\tSTATUS\tENDED")
	for _, k := range d.First {
		ended := "no"
		if k.Ended {
			ended = "yes"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", clitext.Cell(k.Key, 40), k.ID, clitext.Cell(string(k.Status), 0), ended)
	}
	tw.Flush()
	if d.More > 0 {
		fmt.Fprintf(w, "  and %d more (the dashboard pages them: taskflow ui)\n", d.More)
	}
}

func printFlow(w io.Writer, f *taskflow.Flow, l *taskflow.Lease, now time.Time) {
	tw := clitext.NewTable(w)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("id", f.ID.String())
	row("status", paint(w, statusColour(f.Status), string(f.Status)))
	row("cancel_requested", fmt.Sprint(f.CancelRequested))
	row("controller_id", clitext.Cell(f.ControllerID, 0))
	row("goal", clitext.Cell(f.Goal, 0))
	row("owner_session_key", clitext.Cell(f.OwnerSessionKey, 0))
	row("requester_origin", clitext.Cell(f.RequesterOrigin, 0))
	row("current_step", clitext.Cell(f.CurrentStep, 0))
	if f.ParentID != uuid.Nil {
		row("parent", fmt.Sprintf("%s, key %s", f.ParentID, clitext.Cell(f.ChildKey, 0)))
	}
	if f.Children > 0 {
		row("children", fmt.Sprint(f.Children))
	}
	if len(f.Attributes) > 0 {
		row("attributes", clitext.Cell(attrText(f.Attributes, ", "), 0))
	}
	if len(f.Concurrency) > 0 {
		row("concurrency_keys", clitext.Cell(strings.Join(f.Concurrency, ", "), 0))
	}
	if f.Priority != 0 {
		row("priority", fmt.Sprint(f.Priority))
	}
	row("wait", describeWait(f.Wait, now))
	row("lease", describeLease(l, now))
	row("revision", fmt.Sprint(f.Revision))
	row("created_at", fmtTime(f.CreatedAt))
	row("updated_at", fmtTime(f.UpdatedAt))
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "state:")
	fmt.Fprintln(w, indentJSON(f.State, "  "))
}

func printSteps(w io.Writer, steps []*taskflow.FlowStep) {
	fmt.Fprintln(w, "steps:")
	if len(steps) == 0 {
		fmt.Fprintln(w, "  none")
		return
	}
	tw := clitext.NewTable(w)
	fmt.Fprintln(tw, "  RUN_ID\tSTATUS\tTASK\tUPDATED")
	for _, s := range steps {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", clitext.Cell(s.RunID, 36), s.Status, clitext.Cell(s.Task, 50), fmtTime(s.UpdatedAt))
	}
	tw.Flush()
}

// printEvents prints an events table, each line after indent.
func printEvents(w io.Writer, events []*taskflow.FlowEvent, indent string) error {
	if len(events) == 0 {
		fmt.Fprintln(w, indent+"no events")
		return nil
	}
	tw := clitext.NewTable(w)
	fmt.Fprintln(tw, indent+"ID\tKIND\tREV\tAT\tPAYLOAD")
	for _, e := range events {
		fmt.Fprintf(tw, "%s%s\t%s\t%d\t%s\t%s\n", indent, e.ID, e.Kind, e.Revision, fmtTime(e.At), clitext.Cell(clitext.CompactJSON(e.Payload), 60))
	}
	return tw.Flush()
}

// describeLease says who holds a flow and until when.
func describeLease(l *taskflow.Lease, now time.Time) string {
	if l == nil {
		return "none (no worker holds the flow)"
	}
	what := fmt.Sprintf("worker %s (controller %s, token %s)", clitext.Cell(l.WorkerID, 0), clitext.Cell(l.ControllerID, 0), clitext.ShortToken(l.Token))
	if !l.ExpiresAt.After(now) {
		return fmt.Sprintf("%s, expired %s at %s; the engine's next tick puts the flow back on the ready queue",
			what, fmtRelative(l.ExpiresAt, now), fmtTimeMs(l.ExpiresAt))
	}
	return fmt.Sprintf("%s until %s (%s)", what, fmtTimeMs(l.ExpiresAt), fmtRelative(l.ExpiresAt, now))
}

// statusColour is the colour of a status in show: green finished, red
// failed, yellow cancelled, none otherwise.
func statusColour(st taskflow.FlowStatus) string {
	switch st {
	case taskflow.StatusFinished:
		return green
	case taskflow.StatusFailed:
		return red
	case taskflow.StatusCancelled:
		return yellow
	}
	return ""
}
