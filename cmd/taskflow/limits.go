package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/clitext"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/statsview"
)

var limitsVerb = &verb{
	name:    "limits",
	args:    "<action> [<key>] [flags]",
	summary: "limit concurrency keys: flows at once, claims per interval, weight",
	help: `Manage the limits of the flow space's concurrency keys. A flow may carry
concurrency keys (e.g. tenant:acme, model:gpt-x); a key's limit bounds how
many of its flows hold a lease at once across the fleet, and how many are
claimed per interval, and weighs its flows in the fair order. A change holds
from the next claim; deleting a limit releases the flows that waited for it.
At most 1000 keys have a limit. 'taskflow help limits <action>' prints an
action's flags.

  set <key>      set the key's limit: --concurrency, --rate, --per, --burst,
                 --weight (a flag not given sets no bound, or its default)
  list           every key with a limit: in flight, limits, backlog
  delete <key>   delete the key's limit: its flows go without bound`,
	run:    cmdLimits,
	nested: limitsActions,
}

// limitsActions are the actions of 'taskflow limits'.
func limitsActions() []*verb {
	return []*verb{
		{name: "limits set", args: "<key> [--concurrency N] [--rate N] [flags]",
			summary: "set a key's limit",
			help: `Set (or replace) the limit of a concurrency key (1 to 128 bytes of letters,
digits and _.:/@=+-). The limit is the flags given: one not given sets no
bound (--concurrency, --rate) or its default (--per 1s, --burst the rate,
--weight 1). A limit with no bound still lists the key in 'taskflow limits
list', 'taskflow stats' and the metrics. Lowering --concurrency under the
flows in flight takes no lease away: the key admits no more until enough
leases end.

  taskflow limits set tenant:acme --concurrency 3 --weight 2
  taskflow limits set model:gpt-x --rate 500 --per 1m --burst 50`,
			run: cmdLimitsSet},
		{name: "limits list", args: "", summary: "list the keys with a limit",
			help: `List the keys with a limit, by key: how many of their flows hold a lease
(IN FLIGHT), the concurrency limit, the rate (claims per interval), the
burst, the weight, and the backlog: the ready flows waiting whose first key
it is. "-" is no bound.`,
			run: cmdLimitsList},
		{name: "limits delete", args: "<key>", summary: "delete a key's limit",
			help: `Delete the limit of a key: its flows are claimed without bound from the next
claim, and the claims waiting for it are woken. A key with no limit is an
error (exit status 1).`,
			run: cmdLimitsDelete},
	}
}

func cmdLimits(ctx context.Context, c *cli, args []string) error {
	var names []string
	for _, a := range c.v.nested() {
		names = append(names, strings.TrimPrefix(a.name, "limits "))
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		c.flags()
		if _, err := c.parse(args); err != nil {
			return err
		}
		return usagef("limits: missing action (%s)", strings.Join(names, ", "))
	}
	for _, a := range c.v.nested() {
		if a.name == "limits "+args[0] {
			c.v = a
			return a.run(ctx, c, args[1:])
		}
	}
	msg := fmt.Sprintf("limits: unknown action %q", args[0])
	if s := suggest(args[0], names); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return usagef("%s (see 'taskflow help limits')", msg)
}

// maxLimitFigure is the library's bound on a limit's concurrency, rate and
// burst (taskflow.KeyLimit).
const maxLimitFigure = 1_000_000_000

func cmdLimitsSet(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	concurrency := fs.Int("concurrency", 0, "how many flows carrying the key hold a lease at once, fleet-wide (0: no bound)")
	rate := fs.Int("rate", 0, "how many flows carrying the key are claimed per --per (0: no bound)")
	per := new(time.Duration)
	durationVar(fs, per, "per", 0, "the rate's `interval`, 1ms to 1d (default 1s)")
	burst := fs.Int("burst", 0, "how many claims the rate's bucket holds (default the rate)")
	weight := fs.Int("weight", 0, "the key's share in the fair order, 1 to 1000 (default 1)")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos, "<key>"); err != nil {
		return err
	}
	for _, x := range []struct {
		name string
		v    int
		most int
	}{{"concurrency", *concurrency, maxLimitFigure}, {"rate", *rate, maxLimitFigure},
		{"burst", *burst, maxLimitFigure}, {"weight", *weight, 1000}} {
		if x.v < 0 || x.v > x.most {
			return usagef("limits set: --%s %d is outside 0..%d", x.name, x.v, x.most)
		}
	}
	if (c.isSet("per") || c.isSet("burst")) && *rate == 0 {
		return usagef("limits set: --per and --burst shape a rate: give --rate N too")
	}
	if c.isSet("per") && (*per < time.Millisecond || *per > 24*time.Hour) {
		return usagef("limits set: --per %s is outside 1ms..1d", fmtDuration(*per))
	}
	l := taskflow.KeyLimit{Key: pos[0], Concurrency: *concurrency, Rate: *rate, Per: *per, Burst: *burst, Weight: *weight}
	m, err := c.connectLimits(ctx)
	if err != nil {
		return err
	}
	if err := m.SetKeyLimit(ctx, l); err != nil {
		if errors.Is(err, taskflow.ErrInvalidData) {
			return usagef("limits set: %s", cleanError(err))
		}
		return err
	}
	u, err := keyUsage(ctx, m, l.Key)
	if err != nil {
		return err
	}
	if u == nil {
		return fmt.Errorf("the limit of %q was deleted meanwhile", l.Key)
	}
	if c.json {
		return writeJSON(c.stdout, u)
	}
	_, err = fmt.Fprintf(c.stdout, "limit %s set: %s\n", u.Key, describeLimit(u.KeyLimit))
	return err
}

func cmdLimitsList(ctx context.Context, c *cli, args []string) error {
	c.flags()
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos); err != nil {
		return err
	}
	m, err := c.connectLimits(ctx)
	if err != nil {
		return err
	}
	list, err := m.KeyLimits(ctx)
	if err != nil {
		return err
	}
	if c.json {
		if list == nil {
			list = []taskflow.KeyUsage{}
		}
		return writeJSON(c.stdout, list)
	}
	if len(list) == 0 {
		_, err := fmt.Fprintln(c.stdout, "no limits")
		return err
	}
	return printLimits(c.stdout, list)
}

// printLimits prints the keys' limits as a table.
func printLimits(w io.Writer, list []taskflow.KeyUsage) error {
	tw := clitext.NewTable(w)
	fmt.Fprintln(tw, "KEY\tIN FLIGHT\tCONCURRENCY\tRATE\tBURST\tWEIGHT\tBACKLOG")
	for _, u := range list {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%d\n", u.Key, u.InFlight, statsview.Bound(u.Concurrency), statsview.Rate(u.KeyLimit),
			burstText(u.KeyLimit), u.Weight, u.Backlog)
	}
	return tw.Flush()
}

func cmdLimitsDelete(ctx context.Context, c *cli, args []string) error {
	c.flags()
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos, "<key>"); err != nil {
		return err
	}
	m, err := c.connectLimits(ctx)
	if err != nil {
		return err
	}
	key := pos[0]
	u, err := keyUsage(ctx, m, key)
	if err != nil {
		return err
	}
	if u == nil {
		return fmt.Errorf("key %q has no limit (see 'taskflow limits list')", key)
	}
	if err := m.DeleteKeyLimit(ctx, key); err != nil {
		if errors.Is(err, taskflow.ErrInvalidData) {
			return usagef("limits delete: %s", cleanError(err))
		}
		return err
	}
	if c.json {
		return writeJSON(c.stdout, map[string]any{"key": key, "deleted": true})
	}
	_, err = fmt.Fprintf(c.stdout, "limit %s deleted (its flows are claimed without bound)\n", key)
	return err
}

// connectLimits is connect for the limits actions: a flow space that does
// not exist yet is served (limits may be set before its first flow), with
// a warning naming the flow spaces that do exist, since a limit on a
// mistyped prefix would hold nothing.
func (c *cli) connectLimits(ctx context.Context) (*taskflow.Manager, error) {
	return c.connectServing(ctx, "its limits apply to the flows to come")
}

// keyUsage is key's limit and figures, nil when it has none.
func keyUsage(ctx context.Context, m *taskflow.Manager, key string) (*taskflow.KeyUsage, error) {
	list, err := m.KeyLimits(ctx)
	if err != nil {
		return nil, err
	}
	for i := range list {
		if list[i].Key == key {
			return &list[i], nil
		}
	}
	return nil, nil
}

// burstText prints a rate's burst, "-" without a rate.
func burstText(l taskflow.KeyLimit) string {
	if l.Rate == 0 {
		return "-"
	}
	return strconv.Itoa(l.Burst)
}

// describeLimit says a limit in words.
func describeLimit(l taskflow.KeyLimit) string {
	conc := "no concurrency bound"
	if l.Concurrency > 0 {
		conc = fmt.Sprintf("concurrency %d", l.Concurrency)
	}
	rate := "no rate bound"
	if l.Rate > 0 {
		rate = fmt.Sprintf("rate %s (burst %d)", statsview.Rate(l), l.Burst)
	}
	return fmt.Sprintf("%s, %s, weight %d", conc, rate, l.Weight)
}
