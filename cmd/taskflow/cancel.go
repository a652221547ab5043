package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

var cancelVerb = &verb{
	name:    "cancel",
	args:    "<id> [--reason TEXT] [--actor NAME]",
	summary: "cancel a flow (the audit event names who and why)",
	help: `Cancel a flow that is not finished, failed or cancelled yet. Cancelling an
already cancelled flow succeeds and changes nothing.

The cancelled event records the actor (default cli:<user>@<host>) and the
--reason in its payload, so 'taskflow events <id>' says who cancelled and why.

A flow a worker holds under a live lease is cancelled all the same, with a
warning naming the worker: its next leased write is refused (lease lost), so
the worker learns of it only then.`,
	run: cmdCancel,
}

func cmdCancel(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	reason := fs.String("reason", "", "`text` saying why, recorded in the cancelled event (at most 1024 bytes)")
	actor := fs.String("actor", defaultActor(), "`name` of who cancels, recorded in the cancelled event")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(*reason) > maxAuditText || len(*actor) > maxAuditText {
		return usagef("--reason and --actor take at most %d bytes", maxAuditText)
	}
	m, id, err := c.flowArgParsed(ctx, pos)
	if err != nil {
		return err
	}
	f, err := getFlow(ctx, m, id)
	if err != nil {
		return err
	}
	if !f.Status.IsTerminal() {
		c.warnLeased(ctx, m, id)
	}
	f, err = m.Cancel(ctx, id, taskflow.WithAudit(*actor, *reason))
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

// warnLeased warns when a worker holds the flow under a live lease.
func (c *cli) warnLeased(ctx context.Context, m *taskflow.Manager, id uuid.UUID) {
	l, err := m.LeaseOf(ctx, id)
	if err != nil || l == nil || !l.ExpiresAt.After(time.Now()) {
		return
	}
	c.warnf("flow %s is leased by worker %s until %s; the worker finds out when its next write is refused (lease lost)",
		id, l.WorkerID, fmtTimeMs(l.ExpiresAt))
}

// defaultActor is cli:<user>@<host>, as far as they are known.
func defaultActor() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if name == "" {
		name = "unknown"
	}
	host, _ := os.Hostname()
	if host == "" {
		return "cli:" + name
	}
	return "cli:" + name + "@" + host
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
