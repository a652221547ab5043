package main

import (
	"context"
	"fmt"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/clitext"
)

// stuckLimit is how many stuck flows stuck lists by default.
const stuckLimit = 100

var stuckVerb = &verb{
	name:    "stuck",
	args:    "[--limit N] [--fail]",
	summary: "list the flows nothing in place will move, and why",
	help: `List the flows that nothing in place will move (Manager.Stuck), one a line:
id, status, code (see 'taskflow help explain') and why. A flow is stuck when
no engine ticks and it waits on a timer that is due, holds an expired lease
or has a cancel to apply; when it has been ready for over a minute and no
worker waits for its controller's flows; when it was created over a minute
ago and never started; or when it waits on something the engine cannot end.
A late flow whose engines and workers are running is not listed. It looks
where stuck flows are found (due timers, expired leases, cancel requests,
old ready and created flows), not at every flow, and changes nothing.

With none, it prints "no stuck flows" and exits 0. --fail makes a non-empty
list exit 1 (after printing it), for cron jobs and alerts. When the list
reaches --limit, a warning says more flows may be stuck.

Examples:

  taskflow stuck
  taskflow stuck --fail --json || notify-ops`,
	run: cmdStuck,
}

func cmdStuck(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	limit := fs.Int("limit", stuckLimit, "list at most `N` flows, 1.."+fmt.Sprint(maxListLimit))
	fail := fs.Bool("fail", false, "exit 1 when a flow is stuck (for cron jobs and alerts)")
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
	stuck, err := m.Stuck(ctx, *limit)
	if err != nil {
		return err
	}
	if c.json {
		if stuck == nil {
			stuck = []*taskflow.Explanation{}
		}
		if err := writeJSON(c.stdout, stuck); err != nil {
			return err
		}
	} else if len(stuck) == 0 {
		fmt.Fprintln(c.stdout, "no stuck flows")
	} else {
		tw := clitext.NewTable(c.stdout)
		fmt.Fprintln(tw, "ID\tSTATUS\tCODE\tTEXT")
		for _, x := range stuck {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", x.FlowID, x.Status, x.Code, clitext.Cell(x.Text, 0))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(stuck) == *limit {
		c.warnf("listed the first %d stuck flows; more may be stuck (raise --limit)", *limit)
	}
	if *fail && len(stuck) > 0 {
		return fmt.Errorf("%d stuck flow(s)", len(stuck))
	}
	return nil
}
