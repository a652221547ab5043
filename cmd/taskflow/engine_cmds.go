package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/taskflow-dev/taskflow"
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

func cmdTick(ctx context.Context, c *cli, args []string) error {
	c.flags("tick", "", "Run one wait-engine tick: cancel waiting flows whose cancel was requested,\n"+
		"resume flows whose timer is due, and print the report. Exit status 1 when\n"+
		"the tick met errors.")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos); err != nil {
		return err
	}
	m, err := c.connect(ctx)
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
		fmt.Fprintf(c.stderr, "taskflow: the tick met %d errors; the first: %s\n", rep.Errors, oneLine(cleanError(rep.Err)))
		return errReported
	}
	return nil
}

func printTick(w io.Writer, r taskflow.TickReport) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "scanned\t%d\n", r.Scanned)
	fmt.Fprintf(tw, "resumed\t%d\n", r.Resumed)
	fmt.Fprintf(tw, "cancelled\t%d\n", r.Cancelled)
	fmt.Fprintf(tw, "still_waiting\t%d\n", r.StillWaiting)
	fmt.Fprintf(tw, "errors\t%d\n", r.Errors)
	return tw.Flush()
}

func cmdRun(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("run", "[--interval D] [--nats URL]", "Run the wait engine (a tick every interval) and the resume bridge until\n"+
		"SIGINT or SIGTERM. On a terminal one status line is updated in place;\n"+
		"otherwise (or with --json) one JSON line is printed per tick.\n\n"+
		"With --nats, resume messages the original nexo-taskflow publishes on the\n"+
		"NATS subject taskflow.resume are handed to the resume bridge too: through a\n"+
		"durable JetStream consumer when the server has JetStream (nothing lost),\n"+
		"with core NATS (at most once) otherwise.")
	interval := fs.Duration("interval", taskflow.DefaultTickInterval, "time between ticks")
	natsOpts := registerNATSFlags(fs)
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos); err != nil {
		return err
	}
	if *interval <= 0 {
		return usagef("--interval %s is not positive", *interval)
	}
	m, err := c.connect(ctx)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := taskflow.NewWaitEngine(m, taskflow.WithLogger(c.logger(slog.LevelInfo)))
	d := &runDisplay{c: c, e: e, live: !c.json && isTerminal(c.stdout)}
	if d.live {
		fmt.Fprintf(c.stdout, "wait engine and resume bridge on prefix %q, a tick every %s; Ctrl-C stops\n", c.prefix, *interval)
	}
	var wg sync.WaitGroup
	if natsOpts.url != "" {
		if err := startNATS(ctx, c, m, natsOpts, &wg); err != nil {
			return err
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = e.RunResumeBridge(ctx)
	}()
	if d.live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.refresh(ctx, time.Second)
		}()
	}
	err = e.RunWithReports(ctx, *interval, d.report)
	wg.Wait()
	d.finish()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// runDisplay shows the progress of run.
type runDisplay struct {
	c    *cli
	e    *taskflow.WaitEngine
	live bool

	mu        sync.Mutex
	ticks     int
	resumed   int
	cancelled int
	waiting   int
	errors    int
}

// runLine is one JSON line of run: the tick's report and the bridge's
// counters since the start.
type runLine struct {
	Tick int    `json:"tick"`
	At   string `json:"at"`
	tickJSON
	Bridge taskflow.BridgeStats `json:"bridge"`
}

func (d *runDisplay) report(r taskflow.TickReport) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ticks++
	d.resumed += r.Resumed
	d.cancelled += r.Cancelled
	d.waiting = r.StillWaiting
	d.errors += r.Errors
	if d.live {
		d.draw()
		return
	}
	_ = writeJSONLine(d.c.stdout, runLine{
		Tick: d.ticks, At: time.Now().UTC().Format(time.RFC3339Nano),
		tickJSON: newTickJSON(r), Bridge: d.e.BridgeStats(),
	})
}

// refresh redraws the status line every period, so bridge resumes show
// between ticks.
func (d *runDisplay) refresh(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.mu.Lock()
			d.draw()
			d.mu.Unlock()
		}
	}
}

func (d *runDisplay) draw() {
	b := d.e.BridgeStats()
	statusLine{d.c.stdout}.update(fmt.Sprintf(
		"ticks %d  resumed %d  cancelled %d  waiting %d  errors %d  bridge: handled %d, resumed %d",
		d.ticks, d.resumed, d.cancelled, d.waiting, d.errors, b.Handled, b.Resumed))
}

func (d *runDisplay) finish() {
	if !d.live {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.draw()
	statusLine{d.c.stdout}.done()
}
