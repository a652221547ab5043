package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/clitext"
)

// watchTimeLayout is the event time in watch's lines: UTC, milliseconds,
// always the same width.
const watchTimeLayout = "2006-01-02T15:04:05.000Z07:00"

var watchVerb = &verb{
	name:    "watch",
	args:    "[<id>] [--count N] [--for D]",
	summary: "stream audit events as they are appended",
	help: `Stream audit events as they are appended: one flow's with an id, every flow's
without. One line per event (time, flow id, kind, revision, lease, payload),
or with --json one event object per line. A banner on stderr says what is
watched, where.

Watching every flow of a flow space that does not exist yet is allowed (the
workers may not have started) with a warning naming the spaces that do exist.

It runs until SIGINT or SIGTERM, until --count events were printed, for --for,
or, watching one flow, until that flow ends (finished, failed, cancelled);
each ends with exit status 0. A flow that has already ended is refused (exit
status 1): it appends no more events. The stream is live: events appended
before it started are in 'taskflow events <id>'.

Examples:

  taskflow watch 1b4e28ba-2fa1-11d2-883f-0016d3cca427
  taskflow watch --for 1h --json`,
	run: cmdWatch,
}

func cmdWatch(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	count := fs.Int("count", 0, "stop after `N` events (0: no limit)")
	var limit time.Duration
	durationVar(fs, &limit, "for", 0, "stop after `D`, e.g. 90s, 1h, 1d (0: no limit)")
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
	var id uuid.UUID
	one := len(pos) == 1
	if one {
		if id, err = parseID(pos[0]); err != nil {
			return err
		}
	}
	// One flow must exist, so must its space; every flow's stream may
	// start before the workers create the space (with a warning).
	connect := c.connectExisting
	if !one {
		connect = c.connectWarn
	}
	m, err := connect(ctx)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("every flow of flow space %q", c.prefix)
	if one {
		f, err := getFlow(ctx, m, id)
		if err != nil {
			return err
		}
		if err := ended(f); err != nil {
			return err
		}
		what = fmt.Sprintf("flow %s (%s) of flow space %q", id, f.Status, c.prefix)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var events <-chan *taskflow.FlowEvent
	if one {
		events, err = m.Watch(ctx, id)
	} else {
		events, err = m.WatchAll(ctx)
	}
	if err != nil && ctx.Err() != nil {
		return nil // --for, or a signal, ended the watch while it subscribed
	}
	if err != nil {
		return err
	}
	if one {
		// It may have ended between the read and the subscription.
		f, err := getFlow(ctx, m, id)
		if err == nil {
			err = ended(f)
		}
		if err != nil {
			cancel()
			drain(events)
			return err
		}
	}
	if !c.json {
		until := "Ctrl-C stops"
		if limit > 0 {
			until = "for " + fmtDuration(limit) + "; " + until
		}
		fmt.Fprintf(c.stderr, "%s\n", paint(c.stderr, dim, fmt.Sprintf("watching %s at %s, %s", what, serverName(c.redisURL), until)))
	}
	// Redis going away is not silent: an outage and its end are told on
	// stderr, and a watch that ends with Redis still away fails.
	health := startHealth(ctx, c, m.Store().Client(), one, id)
	defer health.stop()
	// The channel closes when ctx ends: a signal, --for, or --count below.
	n := 0
	for ev := range events {
		if err := c.printWatched(ev); err != nil {
			cancel()
			drain(events)
			return err
		}
		n++
		last := one && isEndEvent(ev.Kind)
		if last || (*count > 0 && n >= *count) {
			cancel()
			// Wait for the subscriptions to close before the client does.
			drain(events)
			if last && !c.json {
				fmt.Fprintf(c.stderr, "flow %s is %s; nothing more to watch\n", id, ev.Kind)
			}
			break
		}
	}
	return health.stop()
}

// healthInterval is how often watch pings Redis to notice an outage (the
// subscription itself says nothing while the server is away).
const healthInterval = time.Second

// watchHealth pings Redis while a watch runs.
type watchHealth struct {
	done chan struct{}
	err  chan error
	once sync.Once
	res  error
}

// startHealth starts the pings. On the first failed one it warns that
// events are missed from then on; when Redis answers again it says how
// long the gap was and where the missed events are.
func startHealth(ctx context.Context, c *cli, client redis.UniversalClient, one bool, id uuid.UUID) *watchHealth {
	h := &watchHealth{done: make(chan struct{}), err: make(chan error, 1)}
	go func() {
		var down time.Time
		t := time.NewTicker(healthInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
			case <-h.done:
			case <-t.C:
				pctx, cancel := context.WithTimeout(ctx, healthInterval)
				err := client.Ping(pctx).Err()
				cancel()
				switch {
				case ctx.Err() != nil:
				case err != nil && down.IsZero():
					down = time.Now()
					c.warnf("lost Redis at %s (%s): events from now on are not shown until it is back",
						down.UTC().Format(time.RFC3339), netReason(err))
				case err == nil && !down.IsZero():
					where := "taskflow list"
					if one {
						where = "taskflow events " + id.String()
					}
					c.warnf("Redis is back after %s: events from %s to %s were not shown (%s lists them)",
						fmtDuration(time.Since(down)), down.UTC().Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339), where)
					down = time.Time{}
				}
				continue
			}
			if !down.IsZero() {
				h.err <- fmt.Errorf("Redis has been unreachable since %s: the watch saw no events after that", down.UTC().Format(time.RFC3339))
			} else {
				h.err <- nil
			}
			return
		}
	}()
	return h
}

// stop ends the pings and returns an error when Redis was away at the end.
func (h *watchHealth) stop() error {
	h.once.Do(func() {
		close(h.done)
		h.res = <-h.err
	})
	return h.res
}

// ended refuses to watch a flow that has ended.
func ended(f *taskflow.Flow) error {
	if !f.Status.IsTerminal() {
		return nil
	}
	return fmt.Errorf("flow %s is %s and appends no more events; its history: taskflow events %s", f.ID, f.Status, f.ID)
}

// isEndEvent reports whether an event kind ends a flow.
func isEndEvent(kind taskflow.EventKind) bool {
	return kind == taskflow.EventFinished || kind == taskflow.EventFailed || kind == taskflow.EventCancelled
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
		return writeJSONLine(c.stdout, jsonEvent{ev, json.Number(ev.ID)})
	}
	return printWatchLine(c.stdout, ev)
}

func printWatchLine(w io.Writer, ev *taskflow.FlowEvent) error {
	lease := "-"
	if ev.Lease != "" {
		lease = "lease " + clitext.ShortToken(ev.Lease)
	}
	_, err := fmt.Fprintf(w, "%-24s  %s  %-16s  rev %-4d  %-15s  %s\n",
		ev.At.UTC().Format(watchTimeLayout), ev.FlowID, clitext.Cell(string(ev.Kind), 16), ev.Revision,
		lease, strings.TrimSpace(clitext.Cell(clitext.CompactJSON(ev.Payload), 80)))
	return err
}
