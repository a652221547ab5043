package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/clitext"
)

var runVerb = &verb{
	name:    "run",
	args:    "[--interval D] [--nats URL]",
	summary: "run the wait engine and the resume bridge",
	help: `Run the wait engine (a tick every interval) and the resume bridge until
SIGINT or SIGTERM. On a terminal one status line is updated in place (ticks,
resumed, cancelled, waiting, leases expired, errors, and the bridge's resumed
out of handled requests; kept under 80 columns so it rewrites in place);
otherwise (or with --json) one JSON line is printed per tick.

A prefix with no flow space yet is served (the workers may not have started),
with a warning naming the flow spaces that do exist on the server.

With --nats, resume messages the original nexo-taskflow publishes on the NATS
subject taskflow.resume are handed to the resume bridge too: through a durable
JetStream consumer when the server has JetStream (nothing lost), with core
NATS (at most once) otherwise.`,
	run: cmdRun,
}

func cmdRun(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var interval time.Duration
	durationVar(fs, &interval, "interval", taskflow.DefaultTickInterval, "time `D` between ticks")
	natsOpts := registerNATSFlags(fs)
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos); err != nil {
		return err
	}
	if interval <= 0 {
		return usagef("--interval %s is not positive", fmtDuration(interval))
	}
	m, err := c.connectWarn(ctx)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := taskflow.NewWaitEngine(m, taskflow.WithLogger(c.logger(slog.LevelInfo)))
	d := &runDisplay{c: c, e: e, live: !c.json && clitext.IsTerminal(c.stdout)}
	if d.live {
		fmt.Fprintf(c.stdout, "wait engine and resume bridge on prefix %q, a tick every %s; Ctrl-C stops\n", c.prefix, fmtDuration(interval))
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
	err = e.RunWithReports(ctx, interval, d.report)
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
	expired   int
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
	d.expired += r.LeasesExpired
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
	clitext.StatusLine{W: d.c.stdout}.Update(fmt.Sprintf(
		"ticks %d  resumed %d  cancelled %d  waiting %d  expired %d  errors %d  bridge %d/%d",
		d.ticks, d.resumed, d.cancelled, d.waiting, d.expired, d.errors, b.Resumed, b.Handled))
}

func (d *runDisplay) finish() {
	if !d.live {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.draw()
	clitext.StatusLine{W: d.c.stdout}.Done()
}
