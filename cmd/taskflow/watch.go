package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

// watchTimeLayout is the event time in watch's lines: UTC, milliseconds,
// always the same width.
const watchTimeLayout = "2006-01-02T15:04:05.000Z07:00"

func cmdWatch(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("watch", "[<id>] [--count N] [--for D]",
		"Stream audit events as they are appended: one flow's with an id, every flow's\n"+
			"without. One line per event (time, flow id, kind, revision, lease, payload),\n"+
			"or with --json one event object per line. It runs until SIGINT or SIGTERM,\n"+
			"until --count events were printed, or for --for; each ends with exit status\n"+
			"0. The stream is live: events appended before it started are in 'taskflow\n"+
			"events <id>'.")
	count := fs.Int("count", 0, "stop after `N` events (0: no limit)")
	limit := fs.Duration("for", 0, "stop after this `duration` (0: no limit)")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return c.wantArgs(pos, "<id>")
	}
	if *count < 0 {
		return usagef("--count %d is below 0", *count)
	}
	if *limit < 0 {
		return usagef("--for %s is negative", *limit)
	}
	var id uuid.UUID
	if len(pos) == 1 {
		if id, err = parseID(pos[0]); err != nil {
			return err
		}
	}
	m, err := c.connect(ctx)
	if err != nil {
		return err
	}
	if id != uuid.Nil {
		if _, err := getFlow(ctx, m, id); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *limit)
		defer cancel()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var events <-chan *taskflow.FlowEvent
	if id != uuid.Nil {
		events, err = m.Watch(ctx, id)
	} else {
		events, err = m.WatchAll(ctx)
	}
	if err != nil {
		return err
	}
	// The channel closes when ctx ends: a signal, --for, or --count below.
	n := 0
	for ev := range events {
		if err := c.printWatched(ev); err != nil {
			cancel()
			drain(events)
			return err
		}
		if n++; *count > 0 && n >= *count {
			cancel()
			// Wait for the subscriptions to close before the client does.
			drain(events)
			break
		}
	}
	return nil
}

// drain reads a channel until it is closed.
func drain(events <-chan *taskflow.FlowEvent) {
	for range events {
	}
}

// printWatched prints one event: a JSON line with --json, else one line
// with fixed-width columns, so that the lines of a stream line up.
func (c *cli) printWatched(ev *taskflow.FlowEvent) error {
	if c.json {
		return writeJSONLine(c.stdout, ev)
	}
	return printWatchLine(c.stdout, ev)
}

func printWatchLine(w io.Writer, ev *taskflow.FlowEvent) error {
	lease := "-"
	if ev.Lease != "" {
		lease = "lease " + shortToken(ev.Lease)
	}
	_, err := fmt.Fprintf(w, "%-24s  %s  %-16s  rev %-4d  %-15s  %s\n",
		ev.At.UTC().Format(watchTimeLayout), ev.FlowID, cell(ev.Kind, 16), ev.Revision,
		lease, strings.TrimSpace(cell(compactJSON(ev.Payload), 80)))
	return err
}

// shortToken shows the first 8 characters of a lease token, enough to
// tell the leases of one flow apart.
func shortToken(t string) string {
	if len(t) > 8 {
		return t[:8]
	}
	return cell(t, 0)
}
