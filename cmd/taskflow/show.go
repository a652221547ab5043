package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/clitext"
)

// showEvents is how many events show prints.
const showEvents = 20

// flowDetail is the JSON output of show.
type flowDetail struct {
	Flow   *taskflow.Flow       `json:"flow"`
	Steps  []*taskflow.FlowStep `json:"steps"`
	Events []jsonEvent          `json:"events"`
	// Lease is who holds the flow, nil when no worker does.
	Lease *taskflow.Lease `json:"lease"`
}

var showVerb = &verb{
	name:    "show",
	args:    "<id>",
	summary: "show a flow, its lease, state, steps and latest events",
	help: `Show a flow: its fields, its wait in words (a timer's due time and how far
off it is), who holds its lease and until when, its state, its steps and its
latest 20 events.`,
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
	if c.json {
		return writeJSON(c.stdout, flowDetail{Flow: f, Steps: steps, Events: jsonEvents(events), Lease: lease})
	}
	printFlow(c.stdout, f, lease, time.Now())
	fmt.Fprintln(c.stdout)
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
