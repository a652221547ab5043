package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/statsview"
)

var statsVerb = &verb{
	name:    "stats",
	args:    "[--watch] [--interval D] [--count N]",
	summary: "print the flow space's figures: statuses, queues, tick lag, leases",
	help: `Print how many flows are in each status, each controller's ready queue
(depth, oldest age, and how many flows have waited for a worker over a
minute: stuck, no worker claims them), timers due and the tick lag, leases held and expired,
the resume bridge's backlog, early events, parents waiting on their
children, and the relay backlog (work that flows which ended left for their
parents or children; "due" is the part past its 10 s grace, which an
engine's tick does: the call that ended the flow died or failed), and the
schedules (paused, due, how late the most overdue is; fires made and
skipped in total). Two round
trips whatever the number of flows. With --watch, print again every
interval until SIGINT or SIGTERM (or N snapshots); with --json one line
each.`,
	run: cmdStats,
}

func cmdStats(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	watch := fs.Bool("watch", false, "refresh every --interval")
	interval := new(time.Duration)
	durationVar(fs, interval, "interval", 2*time.Second, "refresh `interval` of --watch")
	count := fs.Int("count", 0, "with --watch, stop after `N` snapshots (0: never)")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos); err != nil {
		return err
	}
	if *interval <= 0 || *count < 0 {
		return usagef("stats: --interval must be positive and --count not negative")
	}
	m, err := c.connectExisting(ctx)
	if err != nil {
		return err
	}
	if !*watch {
		st, err := m.Stats(ctx)
		if err != nil {
			return err
		}
		if c.json {
			return writeJSON(c.stdout, st)
		}
		return statsview.Print(c.stdout, st)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	t := time.NewTicker(*interval)
	defer t.Stop()
	for n := 1; ; n++ {
		st, err := m.Stats(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			fmt.Fprintf(c.stderr, "taskflow: %s\n", oneLine(cleanError(err)))
		case c.json:
			err = writeJSONLine(c.stdout, st)
		default:
			if n > 1 {
				fmt.Fprintln(c.stdout)
			}
			err = statsview.Print(c.stdout, st)
		}
		if err != nil && ctx.Err() == nil {
			return err
		}
		if *count > 0 && n >= *count {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
