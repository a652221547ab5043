package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/clitext"
)

// tickJSON is a tick report with its first error, for JSON output.
type tickJSON struct {
	taskflow.TickReport
	Error string `json:"error,omitempty"`
}

func newTickJSON(r taskflow.TickReport) tickJSON {
	out := tickJSON{TickReport: r}
	if r.Err != nil {
		out.Error = cleanError(r.Err)
	}
	return out
}

// logger returns the engine's logger: text lines on stderr.
func (c *cli) logger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: level}))
}

var tickVerb = &verb{
	name:    "tick",
	args:    "",
	summary: "run one wait-engine tick and print its report",
	help: `Run one wait-engine tick: cancel waiting flows whose cancel was requested,
resume flows whose timer is due, put the flows of expired leases back on the
ready queues, make the fires of due schedules, and print the report
(scanned, resumed, cancelled, still_waiting, leases_expired, relayed, fired
and skipped schedule fires, errors). Exit status 1 when the tick met
errors.`,
	run: cmdTick,
}

func cmdTick(ctx context.Context, c *cli, args []string) error {
	c.flags()
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos); err != nil {
		return err
	}
	m, err := c.connectWarn(ctx)
	if err != nil {
		return err
	}
	rep := taskflow.NewWaitEngine(m, taskflow.WithLogger(c.logger(slog.LevelWarn))).Tick(ctx)
	if c.json {
		err = writeJSON(c.stdout, newTickJSON(rep))
	} else {
		err = printTick(c.stdout, rep)
	}
	if err != nil {
		return err
	}
	if rep.Errors > 0 {
		return fmt.Errorf("the tick met %d errors; the first: %s", rep.Errors, oneLine(cleanError(rep.Err)))
	}
	return nil
}

func printTick(w io.Writer, r taskflow.TickReport) error {
	tw := clitext.NewTable(w)
	fmt.Fprintf(tw, "scanned\t%d\n", r.Scanned)
	fmt.Fprintf(tw, "resumed\t%d\n", r.Resumed)
	fmt.Fprintf(tw, "cancelled\t%d\n", r.Cancelled)
	fmt.Fprintf(tw, "still_waiting\t%d\n", r.StillWaiting)
	fmt.Fprintf(tw, "leases_expired\t%d\n", r.LeasesExpired)
	fmt.Fprintf(tw, "relayed\t%d\n", r.Relayed)
	fmt.Fprintf(tw, "fired\t%d\n", r.Fired)
	fmt.Fprintf(tw, "skipped\t%d\n", r.Skipped)
	fmt.Fprintf(tw, "errors\t%d\n", r.Errors)
	return tw.Flush()
}
