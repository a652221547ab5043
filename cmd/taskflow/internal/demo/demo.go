// Package demo plays a small fleet of workers on one flow space and checks
// that nothing was lost on the way: the self-checking demo behind
// 'taskflow demo'.
//
// What it shows, in the order it happens:
//
//   - Producers create flows and start them; starting a flow puts it on the
//     ready queue of the run's controller id.
//   - Workers, each with its own Redis client and manager as if each were
//     a separate process, claim flows off that queue under a lease and do
//     the next piece of each flow's plan: a few steps (each observed
//     running, written under the lease, observed succeeded), then a
//     finish, a failure, or a wait.
//   - The waits are resumed by the actor each names: a timer by a wait
//     engine's tick, an external event by the resume bridge (a message
//     published half to the flow, half by correlation id only), a manual
//     wait by the operator. A cancel the operator requests is carried out
//     by a tick. A resumed flow goes back on the ready queue for
//     whichever worker claims it next.
//   - While the lease holder works, another worker writes a note into the
//     same flow without a lease: both writes must survive.
//   - Some workers hand a flow back mid-way (a release); some stall: their
//     lease is cut to the minimum, a tick expires it and puts the flow
//     back on the queue, and the stalled worker's late write must be
//     refused (ErrLeaseLost).
//
// Then every flow is read back with a fresh client and seven invariants
// are checked: no unexpected error, every flow terminal, every flow ended
// as planned, no lost update (state and revision match what the demo
// did), a complete audit log, exactly one resumed event per resume, and no
// two lease holders interleaving on a flow. Run prints a summary and the
// verdicts (or one JSON report, Report) and fails when a check fails.
//
// The plans: out of every ten flows, three finish, two wait on a timer,
// two on an external event, one on a manual resume, one fails and one is
// cancelled while it waits. Every seventh flow (the 3rd, 10th, …) stalls
// after its first step; every fifth (the 2nd, 7th, …) is handed back after
// a step, unless it stalled after its last.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/taskflow-dev/taskflow"
)

// Bounds of Config.Flows and Config.Workers.
const (
	MaxFlows   = 100000
	MaxWorkers = 256
)

// DefaultPrefix is the flow space the demo verb plays in on a Redis given
// by --redis without --prefix; on the embedded Redis it is the start of a
// fresh prefix.
const DefaultPrefix = "taskflow-demo"

// Config is one demo run.
type Config struct {
	// Flows is how many flows to drive, 1..MaxFlows.
	Flows int
	// Workers is how many workers claim and drive them, 1..MaxWorkers;
	// each has its own client and manager.
	Workers int
	// RedisURL is the Redis to play on. Empty: an embedded Redis
	// (miniredis), started for the run and gone with it, under a fresh
	// prefix.
	RedisURL string
	// Prefix is the flow space on RedisURL, used as given (the verb
	// passes DefaultPrefix unless --prefix is set). The flows are left
	// there. Ignored without RedisURL.
	Prefix string
	// Shards is the flow space's shard count as Connect uses it; the
	// closing hint names it when it is not taskflow.DefaultShards.
	Shards int
	// Connect opens a manager on the flow space prefix of the Redis at
	// url (called once per worker, operator, auditor and engine). Its
	// errors are returned as they are. Required.
	Connect func(ctx context.Context, url, prefix string) (*taskflow.Manager, error)
	// Logger takes the wait engines' warnings; nil discards them.
	Logger *slog.Logger
	// Out takes the progress and the summary, or the JSON report.
	// Required.
	Out io.Writer
	// JSON writes the report as one JSON document (Report) instead of
	// the progress and the summary.
	JSON bool
}

// Run plays the fleet on the Redis cfg names (or an embedded one), checks
// the invariants and writes the report to cfg.Out. It returns an error
// when the run cannot start, when ctx ends before the flows are done
// ("demo interrupted"), or when a check fails.
func Run(ctx context.Context, cfg Config) error {
	switch {
	case cfg.Flows < 1 || cfg.Flows > MaxFlows:
		return fmt.Errorf("demo: %d flows is outside 1..%d", cfg.Flows, MaxFlows)
	case cfg.Workers < 1 || cfg.Workers > MaxWorkers:
		return fmt.Errorf("demo: %d workers is outside 1..%d", cfg.Workers, MaxWorkers)
	case cfg.Connect == nil || cfg.Out == nil:
		return errors.New("demo: Config.Connect and Config.Out are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	t, stopRedis, err := pickTarget(cfg)
	if err != nil {
		return err
	}
	defer stopRedis()
	d, err := newDemo(ctx, cfg, t)
	if err != nil {
		return err
	}
	res, err := d.play(ctx, makePlans(cfg.Flows))
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return errors.New("demo interrupted")
	}
	return d.report(ctx, res)
}
