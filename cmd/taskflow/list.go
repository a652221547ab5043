package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/clitext"
)

// statusFilter is a repeatable --status flag that also takes comma lists.
type statusFilter []taskflow.FlowStatus

func (s *statusFilter) String() string {
	parts := make([]string, len(*s))
	for i, st := range *s {
		parts[i] = string(st)
	}
	return strings.Join(parts, ",")
}

func (s *statusFilter) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		st, err := taskflow.ParseFlowStatus(part)
		if err != nil {
			return fmt.Errorf("unknown status %q (want one of %s)", part, statusNames())
		}
		*s = append(*s, st)
	}
	return nil
}

func statusNames() string {
	var names []string
	for _, st := range taskflow.Statuses() {
		names = append(names, string(st))
	}
	return strings.Join(names, ", ")
}

func (s statusFilter) has(st taskflow.FlowStatus) bool {
	for _, x := range s {
		if x == st {
			return true
		}
	}
	return false
}

// listPage is the JSON output of list.
type listPage struct {
	Flows []*taskflow.Flow `json:"flows"`
	Next  string           `json:"next"`
}

var listVerb = &verb{
	name:    "list",
	args:    "[--status S]... [--owner KEY] [--limit N] [--cursor C]",
	summary: "list flows, most recent status change first",
	help: `List flows, most recent status change first: id, status, current step,
wait (timer, event <topic> or manual), due time of a timer, last update and
goal. --status is repeatable or a comma list.

With --owner, the owner's flows come newest created first and --status filters
them client-side: a page may then hold fewer than --limit rows while a next
cursor is still printed.

A prefix with no flow space on the server is an error naming the server and
the flow spaces that do exist there (found by a SCAN for *:{meta}:layout).

Examples:

  taskflow list --status waiting,running
  taskflow list --owner agent:a:session:1 --json`,
	run: cmdList,
}

func cmdList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var statuses statusFilter
	fs.Var(&statuses, "status", "only flows in `status` (repeatable, or a comma list)")
	owner := fs.String("owner", "", "only flows of the owner session `key` (agent:<agent>:session:<session>)")
	limit := fs.Int("limit", 50, "page size, 1.."+fmt.Sprint(maxListLimit))
	cursor := fs.String("cursor", "", "continue after the page that printed this `cursor`")
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
	opts := []taskflow.ListOption{taskflow.WithLimit(*limit), taskflow.WithCursor(*cursor)}
	page, err := fetchPage(ctx, m, *owner, statuses, opts)
	if errors.Is(err, taskflow.ErrInvalidData) && *cursor != "" {
		return usagef("--cursor %q is not a list cursor (pass the one a previous page printed)", *cursor)
	}
	if err != nil {
		return err
	}
	if c.json {
		return writeJSON(c.stdout, listPage{Flows: page.Flows, Next: page.Next})
	}
	empty := fmt.Sprintf("no flows in flow space %q at %s", c.prefix, serverName(c.redisURL))
	if len(statuses) > 0 || *owner != "" {
		empty = fmt.Sprintf("no flows match in flow space %q at %s", c.prefix, serverName(c.redisURL))
	}
	if *cursor != "" {
		empty = "no more flows"
	}
	return printFlows(c.stdout, page, empty)
}

// fetchPage reads one page: by owner (filtered by status here) or by
// status change.
func fetchPage(ctx context.Context, m *taskflow.Manager, owner string, statuses statusFilter, opts []taskflow.ListOption) (*taskflow.FlowPage, error) {
	if owner == "" {
		return m.ListRecent(ctx, statuses, opts...)
	}
	page, err := m.ListByOwnerPage(ctx, owner, opts...)
	if err != nil || len(statuses) == 0 {
		return page, err
	}
	kept := make([]*taskflow.Flow, 0, len(page.Flows))
	for _, f := range page.Flows {
		if statuses.has(f.Status) {
			kept = append(kept, f)
		}
	}
	page.Flows = kept
	return page, nil
}

// printFlows prints a page as a table, or empty when it holds no flow.
func printFlows(w io.Writer, page *taskflow.FlowPage, empty string) error {
	if len(page.Flows) == 0 {
		fmt.Fprintln(w, empty)
	} else {
		tw := clitext.NewTable(w)
		fmt.Fprintln(tw, "ID\tSTATUS\tSTEP\tWAIT\tDUE\tUPDATED\tGOAL")
		for _, f := range page.Flows {
			status := string(f.Status)
			if f.CancelRequested && !f.Status.IsTerminal() {
				status += " (cancel requested)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.ID, status, clitext.Cell(f.CurrentStep, 20),
				waitColumn(f.Wait), dueColumn(f.Wait), fmtTime(f.UpdatedAt), clitext.Cell(f.Goal, 40))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if page.Next != "" {
		fmt.Fprintf(w, "next: --cursor %s\n", page.Next)
	}
	return nil
}
