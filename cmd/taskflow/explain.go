package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/clitext"
)

var explainVerb = &verb{
	name:    "explain",
	args:    "<id>",
	summary: "say why a flow is where it is and what will move it",
	help: `Say, for one flow, why it is where it is and what will move it on
(Manager.Explain): a sentence on where it is and why, one on what moves it,
the situation's code (created, ready, leased, lease_expired, waiting_timer,
waiting_event, waiting_manual, waiting_children, waiting, cancel_pending,
ended), whether it is stuck (nothing in place will move it: no engine ticks,
no worker waits for its controller, a wait the engine cannot end), and the
facts the words come from (times in RFC 3339, durations in seconds, counts).
It changes nothing.

--json prints the explanation as the library returns it: flow_id, status,
code, stuck, text, moves and facts.

Examples:

  taskflow explain 1b4e28ba-2fa1-11d2-883f-0016d3cca427
  taskflow explain 1b4e28ba-2fa1-11d2-883f-0016d3cca427 --json | jq .facts`,
	run: cmdExplain,
}

func cmdExplain(ctx context.Context, c *cli, args []string) error {
	c.flags()
	m, id, err := c.flowArg(ctx, args)
	if err != nil {
		return err
	}
	x, err := m.Explain(ctx, id)
	if errors.Is(err, taskflow.ErrNotFound) {
		return notFound(id)
	}
	if err != nil {
		return err
	}
	if c.json {
		return writeJSON(c.stdout, x)
	}
	printExplanation(c.stdout, x)
	return nil
}

// printExplanation prints the sentences, then code, stuck and status,
// then the facts sorted by key.
func printExplanation(w io.Writer, x *taskflow.Explanation) {
	fmt.Fprint(w, wrapText(clitext.Cell(x.Text, 0), lineWidth, ""))
	fmt.Fprintln(w)
	fmt.Fprint(w, wrapText("What moves it: "+clitext.Cell(x.Moves, 0), lineWidth, ""))
	fmt.Fprintln(w)
	tw := clitext.NewTable(w)
	stuck := "false"
	if x.Stuck {
		stuck = paint(w, red, "true") + " (nothing in place will move it)"
	}
	fmt.Fprintf(tw, "flow:\t%s\n", x.FlowID)
	fmt.Fprintf(tw, "status:\t%s\n", paint(w, statusColour(x.Status), string(x.Status)))
	fmt.Fprintf(tw, "code:\t%s\n", x.Code)
	fmt.Fprintf(tw, "stuck:\t%s\n", stuck)
	tw.Flush()
	fmt.Fprintln(w)
	if len(x.Facts) == 0 {
		fmt.Fprintln(w, "facts: none")
		return
	}
	fmt.Fprintln(w, "facts:")
	keys := make([]string, 0, len(x.Facts))
	for k := range x.Facts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tw = clitext.NewTable(w)
	for _, k := range keys {
		fmt.Fprintf(tw, "  %s\t%s\n", clitext.Cell(k, 0), clitext.Cell(fmt.Sprint(x.Facts[k]), 0))
	}
	tw.Flush()
}
