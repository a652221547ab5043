package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

// Demo tuning.
const (
	engineTick = 50 * time.Millisecond
	engines    = 2
	leaseFor   = 2 * time.Second // far longer than a piece of work takes
	claimWait  = time.Second
	idleLimit  = 20 * time.Second // give up when no flow moved for this long
	topic      = "demo.webhook"
)

// The plans a demo flow can follow, and how often (out of 10).
var planKinds = [10]string{
	"finish", "timer", "external", "manual", "finish",
	"timer", "external", "fail", "cancel", "finish",
}

// plan is what the demo will do with one flow.
type plan struct {
	n     int
	kind  string
	steps int           // steps before the end or the wait
	delay time.Duration // timer offset, or delay before the resume or cancel
	// handoff: after a step the worker releases the flow, and whichever
	// worker claims it next goes on.
	handoff bool
	// stall: after its first step the worker hangs: it shortens its lease
	// to the minimum and stops working on the flow; once the lease has
	// expired it wakes and tries its next write, which must be refused.
	// An engine's tick puts the flow back on the ready queue.
	stall bool
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
// compare the stored flow with. A piece of work holds mu (so does the
// operator, a stalled worker waking up and the monitor when they record
// something): the flow's lease keeps the holders apart in Redis, mu makes
// their records visible to each other in the process.
type outcome struct {
	mu        sync.Mutex
	plan      plan
	id        uuid.UUID
	mutations int64 // persisted mutations after create: the expected revision
	observed  int   // step observations (events that do not bump the revision)
	stepsDone int
	waits     int // the flow was put waiting
	resumes   int // it came back running after a wait: one resume each
	claims    int // successful claims: one claimed event each
	releases  int // successful releases: one released event each
	stalled   bool
	fenced    int // stale writes refused with ErrLeaseLost
	handedOff bool
	peer      chan peerReply // the peer's note, while it is pending
	peerNote  string
	err       error
}

func makePlans(n int) []plan {
	out := make([]plan, n)
	for i := range out {
		out[i] = plan{
			n:       i + 1,
			kind:    planKinds[i%len(planKinds)],
			steps:   1 + rand.IntN(3),
			delay:   time.Duration(100+rand.IntN(401)) * time.Millisecond,
			handoff: (i+1)%5 == 2,
			stall:   (i+1)%7 == 3,
		}
	}
	return out
}

// target is where the demo plays.
type target struct {
	url      string
	prefix   string
	embedded bool
}

// pickTarget picks the Redis to play on: the one cfg names, or else an
// embedded one under a fresh prefix. The returned func stops the embedded
// one.
func pickTarget(cfg Config) (target, func(), error) {
	if cfg.RedisURL != "" {
		return target{url: cfg.RedisURL, prefix: cfg.Prefix}, func() {}, nil
	}
	mr, err := miniredis.Run()
	if err != nil {
		return target{}, nil, fmt.Errorf("cannot start the embedded Redis: %w", err)
	}
	t := target{
		url:      "redis://" + mr.Addr() + "/0",
		prefix:   DefaultPrefix + "-" + uuid.NewString()[:8],
		embedded: true,
	}
	return t, mr.Close, nil
}

// demo is one run: the actors and their managers, each on its own client
// as if each were a separate process.
type demo struct {
	cfg      Config
	target   target
	session  string
	workers  []*worker
	operator *taskflow.Manager
	auditor  *taskflow.Manager
	engines  []*taskflow.WaitEngine
	progress *progress
	tracker  *tracker
	start    time.Time
	engStats engineTotals
	// later: the operator's delayed actions and the stalled workers'
	// late writes, which outlive the piece of work that started them.
	later sync.WaitGroup
	// stuck is set when the flows stopped moving before all were done.
	stuck bool
}

// controller is the controller id of this run's flows: its own, so that
// the workers never claim flows an earlier, interrupted run left running.
func (d *demo) controller() string { return "demo/" + d.session }

// worker is one worker "process". Its counters are written by its
// own goroutine and read once it has ended.
type worker struct {
	n    int
	id   string // the worker id given to Claim
	m    *taskflow.Manager
	peer chan peerReq

	claims    int
	releases  int
	stalls    int
	lost      int // leases lost while working (the next claimer went on)
	claimErrs int
	claimErr  error // the first one
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

func newDemo(ctx context.Context, cfg Config, t target) (*demo, error) {
	d := &demo{cfg: cfg, target: t, session: uuid.NewString()[:8], progress: &progress{}}
	for i := 0; i < cfg.Workers; i++ {
		m, err := cfg.Connect(ctx, t.url, t.prefix)
		if err != nil {
			return nil, err
		}
		d.workers = append(d.workers, &worker{
			n: i + 1, id: fmt.Sprintf("worker-%d", i+1), m: m, peer: make(chan peerReq),
		})
	}
	var err error
	if d.operator, err = cfg.Connect(ctx, t.url, t.prefix); err != nil {
		return nil, err
	}
	if d.auditor, err = cfg.Connect(ctx, t.url, t.prefix); err != nil {
		return nil, err
	}
	for i := 0; i < engines; i++ {
		m, err := cfg.Connect(ctx, t.url, t.prefix)
		if err != nil {
			return nil, err
		}
		d.engines = append(d.engines, taskflow.NewWaitEngine(m,
			taskflow.WithLogger(cfg.Logger),
			taskflow.WithConsumerName(fmt.Sprintf("demo-%s-engine-%d", d.session, i+1)),
			taskflow.WithBridgeBlock(100*time.Millisecond)))
	}
	return d, nil
}

// play runs the fleet until every flow is done (or gave up) and returns
// the outcomes. The auditor watches every flow's events: they drive the
// progress line and tell when the last flow is done.
func (d *demo) play(ctx context.Context, plans []plan) ([]*outcome, error) {
	outcomes := make([]*outcome, len(plans))
	for i, p := range plans {
		outcomes[i] = &outcome{plan: p}
	}
	d.progress.init(len(plans))
	d.tracker = newTracker(outcomes, d.progress)
	monCtx, stopMonitor := context.WithCancel(ctx)
	defer stopMonitor()
	events, err := d.auditor.WatchAll(monCtx)
	if err != nil {
		return nil, fmt.Errorf("watch the flows: %w", err)
	}
	monitorDone := make(chan struct{})
	go func() {
		defer close(monitorDone)
		for ev := range events {
			d.tracker.event(ev)
		}
	}()

	d.start = time.Now()
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
	fleetCtx, stopFleet := context.WithCancel(ctx)
	var fleet, producers sync.WaitGroup
	for i, w := range d.workers {
		fleet.Add(1)
		go func() {
			defer fleet.Done()
			d.runWorker(ctx, fleetCtx, w)
		}()
		producers.Add(1)
		go func() {
			defer producers.Done()
			d.produce(ctx, w, outcomes, i)
		}()
	}
	producers.Wait()
	d.stuck = !d.tracker.wait(ctx, idleLimit)
	stopFleet()
	fleet.Wait()
	d.later.Wait()
	stopEngines()
	bg.Wait()
	stopShow()
	stopMonitor()
	<-monitorDone
	for _, w := range d.workers {
		_ = w.m.Close()
	}
	return outcomes, nil
}

// produce creates and starts outcomes[first], outcomes[first+workers], …
// with the worker's manager: starting a flow puts it on the ready queue,
// for whichever worker claims it.
func (d *demo) produce(ctx context.Context, w *worker, outcomes []*outcome, first int) {
	for i := first; i < len(outcomes) && ctx.Err() == nil; i += len(d.workers) {
		o := outcomes[i]
		o.mu.Lock()
		if err := d.createAndStart(ctx, w, o); err != nil {
			d.fail(o, err)
		}
		o.mu.Unlock()
	}
}

// runWorker claims flows and does the next piece of each until fleetCtx
// ends. The pieces run under ctx, so that the one in hand is finished.
func (d *demo) runWorker(ctx, fleetCtx context.Context, w *worker) {
	for fleetCtx.Err() == nil {
		f, l, err := w.m.Claim(fleetCtx, d.controller(), w.id, leaseFor, taskflow.WithClaimWait(claimWait))
		if err != nil {
			if fleetCtx.Err() != nil {
				return
			}
			w.claimErrs++
			if w.claimErr == nil {
				w.claimErr = err
			}
			time.Sleep(engineTick) // do not spin on a failing Redis
			continue
		}
		if f == nil {
			continue // nothing became ready within the claim wait
		}
		w.claims++
		d.progress.claimed()
		d.drive(ctx, w, f, l)
	}
}

// servePeers answers other workers' requests to note something in their
// flows: a second writer on the same flow, at the same time as its lease
// holder, without a lease.
func (w *worker) servePeers(ctx context.Context) {
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

// fail records an unexpected error of a flow (o.mu held): the demo stops
// waiting for it.
func (d *demo) fail(o *outcome, err error) {
	if o.err == nil {
		o.err = err
	}
	d.tracker.settle(o)
}

// tracker knows the run's flows by id, follows their events and tells
// when every flow is done: terminal, or given up after an error.
type tracker struct {
	mu       sync.Mutex
	byID     map[uuid.UUID]*outcome
	settled  []bool
	left     int
	done     chan struct{}
	last     time.Time // when one of the flows last moved
	progress *progress
}

func newTracker(outcomes []*outcome, p *progress) *tracker {
	return &tracker{
		byID: map[uuid.UUID]*outcome{}, settled: make([]bool, len(outcomes)), left: len(outcomes),
		done: make(chan struct{}), last: time.Now(), progress: p,
	}
}

// register makes a created flow known, before it is started.
func (t *tracker) register(o *outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byID[o.id] = o
	t.last = time.Now()
}

func (t *tracker) lookup(id uuid.UUID) *outcome {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byID[id]
}

// settle marks a flow done.
func (t *tracker) settle(o *outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last = time.Now()
	if i := o.plan.n - 1; !t.settled[i] {
		t.settled[i] = true
		if t.left--; t.left == 0 {
			close(t.done)
		}
	}
}

// event follows one audit event of any flow of the flow space; the
// events of other runs' flows are ignored.
func (t *tracker) event(ev *taskflow.FlowEvent) {
	o := t.lookup(ev.FlowID)
	if o == nil {
		return
	}
	t.mu.Lock()
	t.last = time.Now()
	t.mu.Unlock()
	i := o.plan.n - 1
	switch ev.Kind {
	case taskflow.EventStarted, taskflow.EventResumed:
		t.progress.set(i, taskflow.StatusRunning)
	case taskflow.EventWaiting:
		t.progress.set(i, taskflow.StatusWaiting)
	case taskflow.EventFinished, taskflow.EventFailed, taskflow.EventCancelled:
		t.progress.set(i, taskflow.FlowStatus(ev.Kind))
		if ev.Kind == taskflow.EventCancelled && o.plan.kind == "cancel" {
			// An engine's tick carried out the operator's request.
			o.mu.Lock()
			o.mutations++
			o.mu.Unlock()
		}
		t.settle(o)
	}
}

// wait blocks until every flow is done and reports true, or reports false
// once no flow moved for idle.
func (t *tracker) wait(ctx context.Context, idle time.Duration) bool {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			return true
		case <-ctx.Done():
			return false
		case <-tick.C:
			t.mu.Lock()
			quiet := time.Since(t.last)
			t.mu.Unlock()
			if quiet > idle {
				return false
			}
		}
	}
}

// engineTotals sums what the engines reported.
type engineTotals struct {
	mu            sync.Mutex
	ticks         int
	resumed       int
	cancelled     int
	leasesExpired int
	errors        int
	bridge        taskflow.BridgeStats
}

func (t *engineTotals) add(r taskflow.TickReport) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ticks++
	t.resumed += r.Resumed
	t.cancelled += r.Cancelled
	t.leasesExpired += r.LeasesExpired
	t.errors += r.Errors
}

// runEngines starts the wait engines: ticks and resume bridges.
func (d *demo) runEngines(ctx context.Context, wg *sync.WaitGroup) {
	for _, e := range d.engines {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_ = e.RunWithReports(ctx, engineTick, d.engStats.add)
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

// after runs f on the operator's manager once delay has passed (the
// operator holds no lease), then, holding o.mu, records its error or
// calls ok.
func (d *demo) after(ctx context.Context, o *outcome, delay time.Duration, what string,
	f func(m *taskflow.Manager) error, ok func()) {
	d.later.Add(1)
	go func() {
		defer d.later.Done()
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := f(d.operator)
		o.mu.Lock()
		defer o.mu.Unlock()
		switch {
		case err != nil:
			d.fail(o, fmt.Errorf("%s: %w", what, err))
		case ok != nil:
			ok()
		}
	}()
}
