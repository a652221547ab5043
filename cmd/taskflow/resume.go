package main

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

var resumeVerb = &verb{
	name:    "resume",
	args:    "<id>",
	summary: "resume a waiting flow (manual unblock)",
	help: `Resume a waiting flow (manual unblock), whatever it waits for: it becomes
running and its wait is cleared. A flow that is not waiting is refused, and so
is one with a cancel request pending.`,
	run: cmdResume,
}

func cmdResume(ctx context.Context, c *cli, args []string) error {
	c.flags()
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

func notWaiting(id uuid.UUID, st taskflow.FlowStatus) error {
	return fmt.Errorf("flow %s is %s, not waiting; nothing to resume", id, st)
}

func cancelPending(id uuid.UUID) error {
	return fmt.Errorf("flow %s has a cancel request pending: the engine's next tick cancels it ('taskflow cancel %s' does it now)", id, id)
}
