package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

func cmdCancel(ctx context.Context, c *cli, args []string) error {
	c.flags("cancel", "<id>", "Cancel a flow that is not finished, failed or cancelled yet.\n"+
		"Cancelling an already cancelled flow succeeds and changes nothing.")
	m, id, err := c.flowArg(ctx, args)
	if err != nil {
		return err
	}
	f, err := m.Cancel(ctx, id)
	var te *taskflow.TransitionError
	if errors.As(err, &te) && te.From == taskflow.StatusCancelled {
		if f, err = getFlow(ctx, m, id); err != nil {
			return err
		}
		return c.printStatus(f, "is already cancelled")
	}
	if err != nil {
		return transitionFailure(id, err, "cancel")
	}
	return c.printStatus(f, "is now cancelled")
}

func cmdResume(ctx context.Context, c *cli, args []string) error {
	c.flags("resume", "<id>", "Resume a waiting flow (manual unblock), whatever it waits for: it becomes\n"+
		"running and its wait is cleared. A flow that is not waiting is refused.")
	m, id, err := c.flowArg(ctx, args)
	if err != nil {
		return err
	}
	f, err := getFlow(ctx, m, id)
	if err != nil {
		return err
	}
	if f.Status != taskflow.StatusWaiting {
		return notWaiting(id, f.Status)
	}
	if f.CancelRequested {
		return cancelPending(id)
	}
	f, err = m.Resume(ctx, id, nil)
	if err != nil {
		return transitionFailure(id, err, "resume")
	}
	return c.printStatus(f, "is resumed and now running")
}

// printStatus reports a flow's new status: one line, or the flow as JSON.
func (c *cli) printStatus(f *taskflow.Flow, what string) error {
	if c.json {
		return writeJSON(c.stdout, f)
	}
	_, err := fmt.Fprintf(c.stdout, "flow %s %s (status %s, revision %d)\n", f.ID, what, f.Status, f.Revision)
	return err
}

// transitionFailure turns a refused cancel or resume into a plain message.
func transitionFailure(id uuid.UUID, err error, verb string) error {
	var te *taskflow.TransitionError
	switch {
	case errors.Is(err, taskflow.ErrNotFound):
		return notFound(id)
	case errors.Is(err, taskflow.ErrCancelPending):
		return cancelPending(id)
	case errors.As(err, &te) && verb == "resume":
		return notWaiting(id, te.From)
	case errors.As(err, &te):
		return fmt.Errorf("flow %s is already %s; nothing to %s", id, te.From, verb)
	}
	return err
}

func notWaiting(id uuid.UUID, st taskflow.FlowStatus) error {
	return fmt.Errorf("flow %s is %s, not waiting; nothing to resume", id, st)
}

func cancelPending(id uuid.UUID) error {
	return fmt.Errorf("flow %s has a cancel request pending: the engine's next tick cancels it ('taskflow cancel %s' does it now)", id, id)
}

func cmdPrune(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("prune", "--older-than D", "Delete finished, failed and cancelled flows last updated more than D ago,\n"+
		"with their steps, events and index entries. Other flows are never touched.")
	olderThan := fs.String("older-than", "", "retention `D`: a Go duration or days, e.g. 7d, 1d12h, 36h, 90m (required)")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos); err != nil {
		return err
	}
	if *olderThan == "" {
		return usagef("prune: --older-than is required (e.g. --older-than 7d)")
	}
	d, err := parseRetention(*olderThan)
	if err != nil {
		return usagef("--older-than %q: %v", *olderThan, err)
	}
	m, err := c.connect(ctx)
	if err != nil {
		return err
	}
	n, err := m.PruneTerminalFlows(ctx, d)
	if err != nil {
		return fmt.Errorf("prune stopped after deleting %d flows: %w", n, err)
	}
	if c.json {
		return writeJSON(c.stdout, map[string]int{"pruned": n})
	}
	_, err = fmt.Fprintf(c.stdout, "pruned %d flows\n", n)
	return err
}

// parseRetention reads a Go duration that may start with a number of
// days: 7d, 1.5d, 1d12h, 36h, 90m.
func parseRetention(s string) (time.Duration, error) {
	bad := errors.New("want a duration such as 7d, 36h or 90m")
	var d time.Duration
	if days, rest, ok := strings.Cut(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || !(n >= 0 && n <= 100*365) {
			return 0, bad
		}
		d = time.Duration(n * float64(24*time.Hour))
		if rest == "" {
			return d, nil
		}
		s = rest
	}
	r, err := time.ParseDuration(s)
	if err != nil {
		return 0, bad
	}
	if r < 0 {
		return 0, errors.New("the duration is negative")
	}
	return d + r, nil
}
