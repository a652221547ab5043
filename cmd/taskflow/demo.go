package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
)

// The demo's machinery is in demo_fleet.go, demo_flow.go and
// demo_report.go; this file is only the verb.

var demoVerb = &verb{
	name:    "demo",
	args:    "[--flows N] [--workers N]",
	summary: "play a fleet of workers and check the invariants",
	help: `Play a small fleet. Flows are created and started; workers, each with its own
Redis client and manager, claim them off the ready queue under a lease and do
the next piece of each flow's plan: steps, then a finish, a failure, or a
timer, external-event or manual wait (or one the operator cancels). Two wait
engines tick and run the resume bridge; a resumed flow goes back on the queue
for whichever worker claims it. Some workers hand a flow back mid-way, some
stall until their lease expires. Then print a summary and check the
invariants (exit status 1 if one fails).

Without --redis (and TASKFLOW_REDIS_URL) it runs on an embedded Redis under a
fresh prefix. With --redis it uses --prefix (default taskflow-demo; the
TASKFLOW_PREFIX variable is ignored, so the demo never writes into a real flow
space by accident) and leaves the flows there for 'taskflow list' and 'show'.`,
	run: cmdDemo,
}

func cmdDemo(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	flows := fs.Int("flows", 300, "how many flows to drive")
	workers := fs.Int("workers", 4, "how many workers (each with its own client and manager)")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos); err != nil {
		return err
	}
	if *flows < 1 || *flows > 100000 {
		return usagef("--flows %d is outside 1..100000", *flows)
	}
	if *workers < 1 || *workers > 256 {
		return usagef("--workers %d is outside 1..256", *workers)
	}
	target, stopRedis, err := c.demoTarget()
	if err != nil {
		return err
	}
	defer stopRedis()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := newDemo(ctx, c, target, *workers)
	if err != nil {
		return err
	}
	res, err := d.play(ctx, makePlans(*flows))
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return errors.New("demo interrupted")
	}
	return d.report(ctx, res)
}
