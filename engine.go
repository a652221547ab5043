package taskflow

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Defaults and limits of a WaitEngine.
const (
	DefaultTickInterval  = 5 * time.Second
	defaultTickBatch     = 100
	maxTickBatch         = 1000
	defaultClaimAfter    = 30 * time.Second
	defaultBridgeBlock   = time.Second
	bridgeGroup          = "taskflow-bridge"
	defaultBridgeBatch   = 50
	bridgeTransientPause = 200 * time.Millisecond
	// minScheduleWake bounds how soon Run ticks again for a due schedule.
	minScheduleWake = 10 * time.Millisecond
)

// WaitEngine resumes waiting flows: due timers on each tick, cancel
// requests of waiting flows on each tick, and external events through
// TryResumeExternal, ResumeByCorrelation and the resume bridge. Its tick
// also fires due schedules (Manager.CreateSchedule), each fire one flow
// however many engines run.
//
// Any number of engines in any number of processes may run on one flow
// space at once: every resume is one script that re-checks the flow, so
// each due flow is resumed exactly once. A tick costs O(shards + due),
// not O(waiting): timers sit in per-shard sorted sets by deadline, and
// cancel-requested waiting flows in per-shard sets.
type WaitEngine struct {
	m       *Manager
	s       *RedisStore
	batch   int
	log     *slog.Logger
	group   string
	name    string
	claim   time.Duration
	block   time.Duration
	bridgeN atomic.Int64 // messages handled (any outcome)
	bridgeR atomic.Int64 // flows resumed through the bridge
	bridgeB atomic.Int64 // malformed messages
	bridgeE atomic.Int64 // messages whose handling failed for good
	bridgeC atomic.Int64 // messages claimed from other consumers
	earlyAt atomic.Int64 // when the tick last re-drove early-event claims (unix ms)
	// schedWake is the earliest due schedule after the last tick (unix
	// ms, 0 = none): Run wakes for it when it comes before the interval.
	schedWake atomic.Int64
}

// EngineOption configures a WaitEngine.
type EngineOption func(*WaitEngine)

// WithTickBatch sets how many due entries a tick takes from one shard per
// round trip (default 100, at most 1000). A tick keeps taking batches
// until nothing is due or 1000 rounds were taken, so the batch bounds
// each round, and batch × 1000 the tick.
func WithTickBatch(n int) EngineOption {
	return func(e *WaitEngine) {
		if n >= 1 && n <= maxTickBatch {
			e.batch = n
		}
	}
}

// WithLogger sets where the engine logs (default slog.Default()).
func WithLogger(l *slog.Logger) EngineOption {
	return func(e *WaitEngine) {
		if l != nil {
			e.log = l
		}
	}
}

// WithConsumerName names this engine in the bridge's consumer group
// (default: a random name per engine). Names must differ between live
// engines; a restarted process may reuse its old name to take its pending
// messages back at once.
func WithConsumerName(name string) EngineOption {
	return func(e *WaitEngine) {
		if name != "" {
			e.name = name
		}
	}
}

// WithClaimAfter sets how long a bridge message may stay unacknowledged
// by another consumer before this engine claims it (default 30 s, at
// least 100 ms). It should exceed the longest time a handler can take.
func WithClaimAfter(d time.Duration) EngineOption {
	return func(e *WaitEngine) {
		if d >= 100*time.Millisecond {
			e.claim = d
		}
	}
}

// WithBridgeBlock sets how long one bridge read blocks waiting for
// messages (default 1 s, from 10 ms to 10 s). RunResumeBridge notices the
// end of its context within about this long.
func WithBridgeBlock(d time.Duration) EngineOption {
	return func(e *WaitEngine) {
		if d >= 10*time.Millisecond && d <= 10*time.Second {
			e.block = d
		}
	}
}

// NewWaitEngine returns an engine over m's flow space.
func NewWaitEngine(m *Manager, opts ...EngineOption) *WaitEngine {
	e := &WaitEngine{
		m:     m,
		s:     m.store,
		batch: defaultTickBatch,
		log:   slog.Default(),
		group: bridgeGroup,
		name:  "engine-" + uuid.NewString()[:8],
		claim: defaultClaimAfter,
		block: defaultBridgeBlock,
	}
	for _, o := range opts {
		if o != nil {
			o(e)
		}
	}
	return e
}

// Run ticks every interval (DefaultTickInterval when interval <= 0) until
// ctx ends, then returns ctx's error. A tick that overruns delays the
// next one; missed ticks are dropped, never burst. When a schedule is due
// before the next tick, Run ticks at its due time instead (at most every
// 10 ms), so a schedule firing every second fires on time under a
// longer interval. When Redis is away the
// loop keeps going: it logs once when ticks start failing and once when
// they recover.
func (e *WaitEngine) Run(ctx context.Context, interval time.Duration) error {
	return e.RunWithReports(ctx, interval, nil)
}

// RunWithReports is Run that also hands every tick's report to report
// (when not nil), for progress displays and metrics.
func (e *WaitEngine) RunWithReports(ctx context.Context, interval time.Duration, report func(TickReport)) error {
	if interval <= 0 {
		interval = DefaultTickInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		rep := e.Tick(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch {
		case rep.Err != nil && rep.Resumed+rep.Cancelled == 0 && !failing:
			failing = true
			e.log.Error("taskflow: engine tick failing; will keep trying", "err", rep.Err)
		case rep.Err == nil && failing:
			failing = false
			e.log.Info("taskflow: engine tick recovered")
		}
		if report != nil {
			report(rep)
		}
		var wake <-chan time.Time
		var timer *time.Timer
		if w := e.schedWake.Load(); w > 0 {
			if d := time.UnixMilli(w).Sub(e.s.now()); d < interval {
				timer = time.NewTimer(max(d, minScheduleWake))
				wake = timer.C
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-wake:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}
