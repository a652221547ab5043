package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

// Demo tuning.
const (
	demoDefaultPrefix = "taskflow-demo"
	demoTick          = 50 * time.Millisecond
	demoEngines       = 2
	demoInFlight      = 16 // flows one worker drives at once
	demoPoll          = 25 * time.Millisecond
	demoWaitLimit     = 20 * time.Second
	demoTopic         = "demo.webhook"
)

// The plans a demo flow can follow, and how often (out of 10).
var demoKinds = [10]string{
	"finish", "timer", "external", "manual", "finish",
	"timer", "external", "fail", "cancel", "finish",
}

// plan is what the demo will do with one flow.
type plan struct {
	n     int
	kind  string
	steps int           // steps before the end or the wait
	delay time.Duration // timer offset, or delay before the resume or cancel
}

// resumes reports whether the flow waits and is resumed.
func (p plan) resumes() bool {
	return p.kind == "timer" || p.kind == "external" || p.kind == "manual"
}

// totalSteps is how many steps the flow runs (one more after a resume).
func (p plan) totalSteps() int {
	if p.resumes() {
		return p.steps + 1
	}
	return p.steps
}

// want is the flow's planned final status.
func (p plan) want() taskflow.FlowStatus {
	switch p.kind {
	case "fail":
		return taskflow.StatusFailed
	case "cancel":
		return taskflow.StatusCancelled
	}
	return taskflow.StatusFinished
}

// outcome is what the demo did to one flow: the expectations the checks
// compare the stored flow with.
type outcome struct {
	plan      plan
	id        uuid.UUID
	mutations int64 // persisted mutations after create: the expected revision
	observed  int   // step observations (events that do not bump the revision)
	stepsDone int
	resumes   int
	peerNote  string
	err       error
}

func makePlans(n int) []plan {
	out := make([]plan, n)
	for i := range out {
		out[i] = plan{
			n:     i + 1,
			kind:  demoKinds[i%len(demoKinds)],
			steps: 1 + rand.IntN(3),
			delay: time.Duration(100+rand.IntN(401)) * time.Millisecond,
		}
	}
	return out
}

// demoTarget is where the demo plays.
type demoTarget struct {
	url      string
	prefix   string
	embedded bool
}

func cmdDemo(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("demo", "[--flows N] [--workers N]",
		"Play a small fleet: workers, each with its own Redis client and manager, drive\n"+
			"flows through steps, timer, external-event and manual waits, failures and\n"+
			"cancels, while two wait engines tick and run the resume bridge. Then print a\n"+
			"summary and check the invariants (exit status 1 if one fails).\n\n"+
			"Without --redis (and TASKFLOW_REDIS_URL) it runs on an embedded Redis under a\n"+
			"fresh prefix. With --redis it uses --prefix (default taskflow-demo; the\n"+
			"TASKFLOW_PREFIX variable is ignored, so the demo never writes into a real flow\n"+
			"space by accident) and leaves the flows there for 'taskflow list' and 'show'.")
	flows := fs.Int("flows", 300, "how many flows to drive")
	workers := fs.Int("workers", 4, "how many workers (each with its own client and manager)")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos); err != nil {
		return err
	}
	if *flows < 1 || *flows > 100000 {
		return usagef("--flows %d is outside 1..100000", *flows)
	}
	if *workers < 1 || *workers > 256 {
		return usagef("--workers %d is outside 1..256", *workers)
	}
	target, stopRedis, err := c.demoTarget()
	if err != nil {
		return err
	}
	defer stopRedis()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := newDemo(ctx, c, target, *workers)
	if err != nil {
		return err
	}
	res := d.play(ctx, makePlans(*flows))
	if ctx.Err() != nil {
		return errors.New("demo interrupted")
	}
	return d.report(ctx, res)
}

// demoTarget picks the Redis to play on: the one named by --redis or
// TASKFLOW_REDIS_URL, or else an embedded one under a fresh prefix.
func (c *cli) demoTarget() (demoTarget, func(), error) {
	if c.isSet("redis") || os.Getenv("TASKFLOW_REDIS_URL") != "" {
		prefix := demoDefaultPrefix
		if c.isSet("prefix") {
			prefix = c.prefix
		}
		return demoTarget{url: c.redisURL, prefix: prefix}, func() {}, nil
	}
	mr, err := miniredis.Run()
	if err != nil {
		return demoTarget{}, nil, fmt.Errorf("cannot start the embedded Redis: %w", err)
	}
	t := demoTarget{
		url:      "redis://" + mr.Addr() + "/0",
		prefix:   demoDefaultPrefix + "-" + uuid.NewString()[:8],
		embedded: true,
	}
	return t, mr.Close, nil
}

// demo is one run: the actors and their managers, each on its own client
// as if each were a separate process.
type demo struct {
	c        *cli
	target   demoTarget
	session  string
	workers  []*demoWorker
	operator *taskflow.Manager
	auditor  *taskflow.Manager
	engines  []*taskflow.WaitEngine
	progress *demoProgress
	start    time.Time
	engStats engineTotals
}

// demoWorker is one worker "process".
type demoWorker struct {
	n    int
	m    *taskflow.Manager
	peer chan peerReq
}

// peerReq asks a worker to write a note into another worker's flow.
type peerReq struct {
	id    uuid.UUID
	reply chan peerReply
}

type peerReply struct {
	note string
	err  error
}

func newDemo(ctx context.Context, c *cli, t demoTarget, workers int) (*demo, error) {
	d := &demo{c: c, target: t, session: uuid.NewString()[:8], progress: &demoProgress{}}
	for i := 0; i < workers; i++ {
		m, err := c.connectURL(ctx, t.url, t.prefix)
		if err != nil {
			return nil, err
		}
		d.workers = append(d.workers, &demoWorker{n: i + 1, m: m, peer: make(chan peerReq)})
	}
	var err error
	if d.operator, err = c.connectURL(ctx, t.url, t.prefix); err != nil {
		return nil, err
	}
	if d.auditor, err = c.connectURL(ctx, t.url, t.prefix); err != nil {
		return nil, err
	}
	for i := 0; i < demoEngines; i++ {
		m, err := c.connectURL(ctx, t.url, t.prefix)
		if err != nil {
			return nil, err
		}
		d.engines = append(d.engines, taskflow.NewWaitEngine(m,
			taskflow.WithLogger(c.logger(slog.LevelWarn)),
			taskflow.WithConsumerName(fmt.Sprintf("demo-%s-engine-%d", d.session, i+1)),
			taskflow.WithBridgeBlock(100*time.Millisecond)))
	}
	return d, nil
}

// play runs the fleet until every flow is done and returns the outcomes.
func (d *demo) play(ctx context.Context, plans []plan) []*outcome {
	d.start = time.Now()
	d.progress.init(len(plans))
	engCtx, stopEngines := context.WithCancel(ctx)
	var bg sync.WaitGroup
	d.runEngines(engCtx, &bg)
	for _, w := range d.workers {
		bg.Add(1)
		go func() {
			defer bg.Done()
			w.servePeers(engCtx)
		}()
	}
	stopShow := d.showProgress(len(plans))
	outcomes := make([]*outcome, len(plans))
	var fleet sync.WaitGroup
	for i, w := range d.workers {
		fleet.Add(1)
		go func() {
			defer fleet.Done()
			d.runWorker(ctx, w, plans, i, outcomes)
		}()
	}
	fleet.Wait()
	stopEngines()
	bg.Wait()
	stopShow()
	return outcomes
}

// runWorker drives plans[first], plans[first+workers], …, up to
// demoInFlight at once.
func (d *demo) runWorker(ctx context.Context, w *demoWorker, plans []plan, first int, out []*outcome) {
	sem := make(chan struct{}, demoInFlight)
	var wg sync.WaitGroup
	for i := first; i < len(plans); i += len(d.workers) {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := &flowRun{d: d, w: w, o: &outcome{plan: plans[i]}}
			r.o.err = r.play(ctx)
			out[i] = r.o
		}()
	}
	wg.Wait()
}

// servePeers answers other workers' requests to note something in their
// flows: a second writer on the same flow, at the same time as its owner.
func (w *demoWorker) servePeers(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-w.peer:
			go func() {
				note := fmt.Sprintf("worker-%d", w.n)
				_, err := w.m.UpdateState(ctx, req.id, map[string]any{"peer_note": note}, "")
				req.reply <- peerReply{note: note, err: err}
			}()
		}
	}
}

// engineTotals sums what the engines reported.
type engineTotals struct {
	mu        sync.Mutex
	ticks     int
	resumed   int
	cancelled int
	errors    int
	bridge    taskflow.BridgeStats
}

func (t *engineTotals) add(r taskflow.TickReport) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ticks++
	t.resumed += r.Resumed
	t.cancelled += r.Cancelled
	t.errors += r.Errors
}

// runEngines starts the wait engines: ticks and resume bridges.
func (d *demo) runEngines(ctx context.Context, wg *sync.WaitGroup) {
	for _, e := range d.engines {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_ = e.RunWithReports(ctx, demoTick, d.engStats.add)
		}()
		go func() {
			defer wg.Done()
			_ = e.RunResumeBridge(ctx)
			b := e.BridgeStats()
			d.engStats.mu.Lock()
			d.engStats.bridge.Handled += b.Handled
			d.engStats.bridge.Resumed += b.Resumed
			d.engStats.bridge.Failed += b.Failed
			d.engStats.bridge.Malformed += b.Malformed
			d.engStats.mu.Unlock()
		}()
	}
}

// after runs f on the operator's manager once delay has passed, and
// delivers its error.
func (d *demo) after(ctx context.Context, delay time.Duration, f func(m *taskflow.Manager) error) <-chan error {
	errc := make(chan error, 1)
	go func() {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			errc <- ctx.Err()
		case <-t.C:
			errc <- f(d.operator)
		}
	}()
	return errc
}
