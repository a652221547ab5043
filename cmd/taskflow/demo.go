package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/demo"
)

// The demo itself is package internal/demo; this file is only the verb.

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
	if *flows < 1 || *flows > demo.MaxFlows {
		return usagef("--flows %d is outside 1..%d", *flows, demo.MaxFlows)
	}
	if *workers < 1 || *workers > demo.MaxWorkers {
		return usagef("--workers %d is outside 1..%d", *workers, demo.MaxWorkers)
	}
	cfg := demo.Config{
		Flows:   *flows,
		Workers: *workers,
		Shards:  c.shards,
		Connect: c.connectURL,
		Logger:  c.logger(slog.LevelWarn),
		Out:     c.stdout,
		JSON:    c.json,
	}
	// Only an explicit Redis: the demo never plays on the default URL.
	if c.isSet("redis") || os.Getenv("TASKFLOW_REDIS_URL") != "" {
		cfg.RedisURL, cfg.Prefix = c.redisURL, demo.DefaultPrefix
		if c.isSet("prefix") {
			cfg.Prefix = c.prefix
		}
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return demo.Run(ctx, cfg)
}
