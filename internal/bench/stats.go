package bench

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/observe"
)

// stats: Manager.Stats at a small and a large flow space (waiting flows
// written directly, plus a few controllers' ready queues and leases made
// through the Manager), on a private server.
func (r *runner) stats(ctx context.Context) error {
	srv, err := r.startServer(ctx)
	if err != nil {
		return err
	}
	defer srv.kill()
	if err := checkFillFidelity(ctx, srv.client, r.newPrefix("fid")); err != nil {
		return err
	}
	prefix := r.newPrefix("stats")
	c := srv.newClient()
	defer c.Close()
	hook := newCountHook()
	c.AddHook(hook)
	st, err := taskflow.NewRedisStore(c, taskflow.WithPrefix(prefix))
	if err != nil {
		return err
	}
	m := taskflow.NewManager(st)
	defer m.Close()
	// 8 controllers with 10 ready flows each, 2 of them leased.
	const controllers, perController = 8, 10
	for i := range controllers {
		ctl := fmt.Sprintf("bench/ctl-%d", i)
		for range perController {
			if _, err := m.CreateMirrored(ctx, taskflow.CreateManagedInput{ControllerID: ctl, Goal: "g", OwnerSessionKey: "agent:b:session:b"}); err != nil {
				return err
			}
		}
		for range 2 {
			if _, _, err := m.Claim(ctx, ctl, "w", time.Hour, taskflow.WithClaimWait(0)); err != nil {
				return err
			}
		}
	}
	extra := controllers * perController
	fw := waitFill{c: srv.client, prefix: prefix, shards: defaultShards, owners: 1000, workers: 4, batch: 500}
	now := time.Now()
	future := func(i int) time.Time { return now.Add(24*time.Hour + time.Duration(i)*time.Millisecond) }
	type result struct {
		size        int
		med, lo, hi float64
		trips, cmds float64
	}
	var results []result
	filled := 0
	for _, size := range []int{r.sz.statsSmall, r.sz.statsLarge} {
		if _, err := fw.fill(ctx, filled, size-filled, now.Add(-time.Minute), now.Add(-time.Minute), future); err != nil {
			return err
		}
		filled = size
		for range 5 { // warm up
			if _, err := m.Stats(ctx); err != nil {
				return err
			}
		}
		var roundMeds []float64
		hook.reset()
		calls := 0
		for round := 0; round < r.cfg.Rounds; round++ {
			times := make([]float64, 0, r.sz.statsCalls)
			for range r.sz.statsCalls {
				if err := ctx.Err(); err != nil {
					return err
				}
				t := time.Now()
				s, err := m.Stats(ctx)
				times = append(times, float64(time.Since(t).Microseconds()))
				calls++
				if err != nil {
					return err
				}
				if s.Total != int64(size+extra) || s.Flows[taskflow.StatusWaiting] != int64(size) ||
					len(s.Ready) != controllers+1 || s.Leases.Held != 2*controllers {
					return fmt.Errorf("stats at %d flows: unexpected %+v", size, s)
				}
			}
			roundMeds = append(roundMeds, median(times))
		}
		lo, hi := minMax(roundMeds)
		results = append(results, result{size: size, med: median(roundMeds), lo: lo, hi: hi,
			trips: float64(hook.trips.Load()) / float64(calls), cmds: float64(hook.cmds.Load()) / float64(calls)})
	}
	fmt.Fprintf(r.out, "Manager.Stats() on %d shards, %d controllers' ready queues (%d flows, %d leased) plus N waiting flows\n",
		defaultShards, controllers+1, extra, 2*controllers)
	fmt.Fprintf(r.out, "written directly (timers a day ahead); private Redis; %d timed calls per round, median per round,\n", r.sz.statsCalls)
	fmt.Fprintln(r.out, "then median of the rounds.")
	var rows [][]string
	for _, x := range results {
		rows = append(rows, []string{n(x.size + extra), f(x.med, 0), f(x.lo, 0) + "-" + f(x.hi, 0), f(x.trips, 1), f(x.cmds, 1)})
	}
	table(r.out, []string{"flows", "Stats us (median)", "round medians", "round trips/call", "commands/call"}, rows)
	ratio := results[1].med / results[0].med
	fmt.Fprintln(r.out)
	table(r.out, []string{"ratio", "value", "target", "verdict"}, [][]string{
		{fmt.Sprintf("Stats time at %s / at %s flows", n(results[1].size+extra), n(results[0].size+extra)), f(ratio, 2), "<= 1.5", verdict(ratio <= 1.5)},
	})
	return nil
}

// HookVariant is one row of HookCost: a name and the observer set on the
// store (nil: none).
type HookVariant struct {
	Name     string
	Observer *observe.Observer
}

// NoopObserver sets every hook of an Observer to a function that does
// nothing: the cost of the calls themselves.
func NoopObserver() *observe.Observer {
	return &observe.Observer{
		Op:          func(context.Context, observe.Op) {},
		Tick:        func(context.Context, observe.Tick) {},
		Claim:       func(context.Context, observe.Claim) {},
		Bridge:      func(context.Context, observe.Bridge) {},
		TraceParent: func(context.Context) string { return "" },
	}
}

// HookCost measures the cost of the observer per mutation: UpdateState
// (lean reply) on one flow per variant, ops times per round, the variants
// interleaved round by round so drift hits them alike. It prints the
// median microseconds and allocations per call and their ratios to the
// first variant, which should be the unset baseline.
func HookCost(ctx context.Context, c redis.UniversalClient, prefix string, variants []HookVariant, rounds, ops int, out io.Writer) error {
	if len(variants) == 0 || rounds < 1 || ops < 1 {
		return fmt.Errorf("bench: HookCost needs variants, rounds and ops")
	}
	type subject struct {
		m  *taskflow.Manager
		id uuid.UUID
	}
	subjects := make([]subject, len(variants))
	for i, v := range variants {
		opts := []taskflow.StoreOption{taskflow.WithPrefix(prefix)}
		if v.Observer != nil {
			opts = append(opts, taskflow.WithObserver(v.Observer))
		}
		st, err := taskflow.NewRedisStore(c, opts...)
		if err != nil {
			return err
		}
		if err := st.LoadScripts(ctx); err != nil {
			return err
		}
		m := taskflow.NewManager(st)
		f, err := m.CreateMirrored(ctx, taskflow.CreateManagedInput{ControllerID: "bench/hooks", Goal: "g", OwnerSessionKey: "agent:b:session:b"})
		if err != nil {
			return err
		}
		subjects[i] = subject{m, f.ID}
	}
	patch := []byte(`{"n":1}`)
	us := make([][]float64, len(variants))
	cpu := make([][]float64, len(variants))
	allocs := make([][]float64, len(variants))
	var ms runtime.MemStats
	for round := 0; round < rounds+1; round++ { // round 0 warms up
		for i, s := range subjects {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			before := ms.Mallocs
			cpu0 := processCPU()
			t := time.Now()
			for range ops {
				if _, err := s.m.UpdateState(ctx, s.id, patch, "", taskflow.WithoutState()); err != nil {
					return err
				}
			}
			d := time.Since(t)
			dcpu := processCPU() - cpu0
			runtime.ReadMemStats(&ms)
			if round > 0 {
				us[i] = append(us[i], float64(d.Microseconds())/float64(ops))
				cpu[i] = append(cpu[i], float64(dcpu.Microseconds())/float64(ops))
				allocs[i] = append(allocs[i], float64(ms.Mallocs-before)/float64(ops))
			}
		}
	}
	fmt.Fprintf(out, "UpdateState (lean reply) on one flow, %d calls per round and variant, %d rounds, variants interleaved;\n", ops, rounds)
	fmt.Fprintln(out, "median of the rounds' per-call means; client CPU (getrusage) and allocs (runtime.MemStats) are the whole")
	fmt.Fprintln(out, "process's per call. Wall time includes the round trip and moves with the machine's load; CPU and allocs less.")
	var rows [][]string
	base, baseCPU, baseAllocs := median(us[0]), median(cpu[0]), median(allocs[0])
	for i, v := range variants {
		u, c, a := median(us[i]), median(cpu[i]), median(allocs[i])
		lo, hi := minMax(us[i])
		rows = append(rows, []string{v.Name, f(u, 1), f(lo, 1) + "-" + f(hi, 1), f(u/base, 2),
			f(c, 1), f(c/baseCPU, 2), f(a, 1), f(a-baseAllocs, 1)})
	}
	table(out, []string{"observer", "wall us/call", "round range", "wall ratio", "client CPU us/call", "CPU ratio", "allocs/call", "extra allocs/call"}, rows)
	return nil
}

// hooks: the observer's cost per mutation, unset and with a no-op
// observer, on a private server.
func (r *runner) hooks(ctx context.Context) error {
	srv, err := r.startServer(ctx)
	if err != nil {
		return err
	}
	defer srv.kill()
	c := srv.newClient()
	defer c.Close()
	return HookCost(ctx, c, r.newPrefix("hooks"), []HookVariant{{"unset", nil}, {"no-op", NoopObserver()}}, r.cfg.Rounds, r.sz.hookOps, r.out)
}
