package main

import (
	"context"
	"fmt"
	"time"

	"github.com/taskflow-dev/taskflow"
)

var pruneVerb = &verb{
	name:    "prune",
	args:    "--older-than D [--dry-run] [--force]",
	summary: "delete old finished, failed and cancelled flows",
	help: `Delete finished, failed and cancelled flows last updated more than D ago,
with their steps, events and index entries. Other flows are never touched.

--dry-run counts (and lists the first 20 of) the flows that would go, and
deletes nothing. A retention under 1h would delete flows an operator may still
be looking at: it is refused unless --force is given.

Examples:

  taskflow prune --older-than 30d --dry-run
  taskflow prune --older-than 7d`,
	run: cmdPrune,
}

// pruneFloor is the shortest retention prune takes without --force.
const pruneFloor = time.Hour

// pruneShown is how many ids a text dry run lists.
const pruneShown = 20

// dryRun is the JSON output of prune --dry-run.
type dryRun struct {
	WouldPrune int      `json:"would_prune"`
	Cutoff     string   `json:"cutoff"`
	IDs        []string `json:"ids"`
}

func cmdPrune(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var olderThan time.Duration
	durationVar(fs, &olderThan, "older-than", -1, "retention `D`: 7d, 1d12h, 36h, 90m (required)")
	dry := fs.Bool("dry-run", false, "count and list what would be deleted; delete nothing")
	force := fs.Bool("force", false, "allow a retention under 1h (0s deletes every terminal flow)")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos); err != nil {
		return err
	}
	if olderThan < 0 {
		return usagef("prune: --older-than is required (e.g. --older-than 7d)")
	}
	if olderThan < pruneFloor && !*force && !*dry {
		return usagef("prune: --older-than %s would delete terminal flows as young as %s; "+
			"the floor is %s (see what would go with --dry-run, or pass --force)",
			fmtDuration(olderThan), fmtDuration(olderThan), fmtDuration(pruneFloor))
	}
	m, err := c.connectExisting(ctx)
	if err != nil {
		return err
	}
	if *dry {
		return c.pruneDryRun(ctx, m, olderThan)
	}
	n, err := m.PruneTerminalFlows(ctx, olderThan)
	if err != nil {
		return fmt.Errorf("prune stopped after deleting %d flows: %w", n, err)
	}
	if c.json {
		return writeJSON(c.stdout, map[string]int{"pruned": n})
	}
	_, err = fmt.Fprintf(c.stdout, "pruned %s (finished, failed or cancelled more than %s ago)\n",
		plural(n, "flow"), fmtDuration(olderThan))
	return err
}

// pruneDryRun counts the terminal flows last updated before the cutoff,
// reading the terminal status indexes page by page.
func (c *cli) pruneDryRun(ctx context.Context, m *taskflow.Manager, olderThan time.Duration) error {
	cutoff := time.Now().Add(-olderThan)
	var terminal []taskflow.FlowStatus
	for _, st := range taskflow.Statuses() {
		if st.IsTerminal() {
			terminal = append(terminal, st)
		}
	}
	out := dryRun{Cutoff: fmtTimeMs(cutoff), IDs: []string{}}
	cursor := ""
	for {
		page, err := m.ListRecent(ctx, terminal, taskflow.WithLimit(maxListLimit), taskflow.WithCursor(cursor))
		if err != nil {
			return err
		}
		for _, f := range page.Flows {
			if f.UpdatedAt.Before(cutoff) {
				out.WouldPrune++
				if len(out.IDs) < 1000 {
					out.IDs = append(out.IDs, f.ID.String())
				}
			}
		}
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	if c.json {
		return writeJSON(c.stdout, out)
	}
	fmt.Fprintf(c.stdout, "dry run: would prune %s last updated before %s; nothing deleted\n",
		plural(out.WouldPrune, "flow"), out.Cutoff)
	for i, id := range out.IDs {
		if i == pruneShown {
			fmt.Fprintf(c.stdout, "  … and %d more\n", out.WouldPrune-pruneShown)
			break
		}
		fmt.Fprintln(c.stdout, "  "+id)
	}
	return nil
}
