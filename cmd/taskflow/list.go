package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
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
	args:    "[--status S] [--controller ID] [--attr K=V] [--owner KEY]",
	summary: "list flows, most recent status change first, or by filters",
	help: `List flows, most recent status change first: id, status, current step,
wait (timer, event <topic> or manual), due time of a timer, last update,
goal, and the search attributes when a flow on the page has any. --status is
repeatable or a comma list.

--controller, --attr and --owner combine (with one --status) through the
library's Find: flows matching all of them, newest created first. Find scans
a bounded part of its index per page, so a page may hold fewer than --limit
rows, even none, while a next cursor is still printed: follow it until none
is printed. --attr takes one name=value (an exact match on that search
attribute). With --owner and several statuses, the owner's flows are
filtered by status client-side instead (the same paging note holds).

A prefix with no flow space on the server is an error naming the server and
the flow spaces that do exist there (found by a SCAN for *:{meta}:layout).

Examples:

  taskflow list --status waiting,running
  taskflow list --controller kate/bible-upload --attr customer=acme
  taskflow list --attr customer=acme --status running --json
  taskflow list --owner agent:a:session:1 --json`,
	run: cmdList,
}

// attrFilter is the one --attr name=value flag.
type attrFilter struct{ name, value string }

func (a *attrFilter) String() string {
	if a.name == "" {
		return ""
	}
	return a.name + "=" + a.value
}

func (a *attrFilter) Set(v string) error {
	if a.name != "" {
		return fmt.Errorf("given twice: a list filters on one attribute")
	}
	name, value, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(name) == "" || value == "" {
		return fmt.Errorf("%q is not name=value (e.g. customer=acme)", v)
	}
	a.name, a.value = name, value
	return nil
}

func cmdList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var statuses statusFilter
	fs.Var(&statuses, "status", "only flows in `status` (repeatable, or a comma list)")
	owner := fs.String("owner", "", "only flows of the owner session `key` (agent:<agent>:session:<session>)")
	controller := fs.String("controller", "", "only flows of the controller `id`")
	var attr attrFilter
	fs.Var(&attr, "attr", "only flows whose search attribute is `name=value`")
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
	filter := taskflow.Filter{Controller: *controller, Owner: *owner, Attribute: attr.String()}
	find := filter.Controller != "" || filter.Attribute != "" || (filter.Owner != "" && len(statuses) <= 1)
	if find && len(statuses) > 1 {
		return usagef("--status takes one status with --controller or --attr, not %d", len(statuses))
	}
	if find && len(statuses) == 1 {
		filter.Status = statuses[0]
	}
	m, err := c.connectExisting(ctx)
	if err != nil {
		return err
	}
	opts := []taskflow.ListOption{taskflow.WithLimit(*limit), taskflow.WithCursor(*cursor)}
	var page *taskflow.FlowPage
	if find {
		page, err = m.Find(ctx, filter, opts...)
	} else {
		page, err = fetchPage(ctx, m, *owner, statuses, opts)
	}
	if errors.Is(err, taskflow.ErrInvalidData) {
		if *cursor != "" && strings.Contains(err.Error(), "cursor") {
			return usagef("--cursor %q is not a list cursor (pass the one a previous page printed with the same filters)", *cursor)
		}
		return usagef("%s", strings.TrimPrefix(err.Error(), taskflow.ErrInvalidData.Error()+": "))
	}
	if err != nil {
		return err
	}
	if c.json {
		return writeJSON(c.stdout, listPage{Flows: page.Flows, Next: page.Next})
	}
	empty := fmt.Sprintf("no flows in flow space %q at %s", c.prefix, serverName(c.redisURL))
	if len(statuses) > 0 || *owner != "" || find {
		empty = fmt.Sprintf("no flows match in flow space %q at %s", c.prefix, serverName(c.redisURL))
	}
	if *cursor != "" {
		empty = "no more flows"
	}
	if find && page.Next != "" && len(page.Flows) == 0 {
		empty = "no matching flows in this page's part of the index"
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
		attrs := false
		for _, f := range page.Flows {
			attrs = attrs || len(f.Attributes) > 0
		}
		tw := clitext.NewTable(w)
		head := "ID\tSTATUS\tSTEP\tWAIT\tDUE\tUPDATED\tGOAL"
		if attrs {
			head += "\tATTRIBUTES"
		}
		fmt.Fprintln(tw, head)
		for _, f := range page.Flows {
			status := string(f.Status)
			if f.CancelRequested && !f.Status.IsTerminal() {
				status += " (cancel requested)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s", f.ID, status, clitext.Cell(f.CurrentStep, 20),
				waitColumn(f.Wait), dueColumn(f.Wait), fmtTime(f.UpdatedAt), clitext.Cell(f.Goal, 40))
			if attrs {
				fmt.Fprintf(tw, "\t%s", clitext.Cell(attrText(f.Attributes, ","), 50))
			}
			fmt.Fprintln(tw)
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

// attrText writes a flow's search attributes as name=value pairs in name
// order, joined by sep; "" for none.
func attrText(attrs map[string]string, sep string) string {
	names := make([]string, 0, len(attrs))
	for n := range attrs {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + attrs[n]
	}
	return strings.Join(parts, sep)
}
