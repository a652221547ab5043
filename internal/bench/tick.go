package bench

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/taskflow-dev/taskflow"
)

// countHook counts what a go-redis client sends: round trips (one per
// command or pipeline) and commands (each command of a pipeline).
type countHook struct {
	trips, cmds atomic.Int64
	mu          sync.Mutex
	names       map[string]int
}

func newCountHook() *countHook { return &countHook{names: map[string]int{}} }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.trips.Add(1)
		h.cmds.Add(1)
		h.note(cmd)
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.trips.Add(1)
		h.cmds.Add(int64(len(cmds)))
		for _, c := range cmds {
			h.note(c)
		}
		return next(ctx, cmds)
	}
}

func (h *countHook) note(c redis.Cmder) {
	h.mu.Lock()
	h.names[strings.ToUpper(c.Name())]++
	h.mu.Unlock()
}

func (h *countHook) reset() {
	h.trips.Store(0)
	h.cmds.Store(0)
	h.mu.Lock()
	h.names = map[string]int{}
	h.mu.Unlock()
}

// summary is "EVALSHA x1, ZCARD x16" in a stable order.
func (h *countHook) summary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := make([]string, 0, len(h.names))
	for k := range h.names {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = fmt.Sprintf("%s x%d", k, h.names[k])
	}
	return strings.Join(parts, ", ")
}

// tick: WaitEngine.TickAt with nothing due at a small and a large number
// of waiting flows (timers in the future), on a private server.
func (r *runner) tick(ctx context.Context) error {
	srv, err := r.startServer(ctx)
	if err != nil {
		return err
	}
	defer srv.kill()
	if err := checkFillFidelity(ctx, srv.client, r.newPrefix("fid")); err != nil {
		return err
	}
	prefix := r.newPrefix("tick")
	engClient := srv.newClient()
	defer engClient.Close()
	hook := newCountHook()
	engClient.AddHook(hook)
	st, err := taskflow.NewRedisStore(engClient, taskflow.WithPrefix(prefix))
	if err != nil {
		return err
	}
	if err := st.LoadScripts(ctx); err != nil {
		return err
	}
	eng := taskflow.NewWaitEngine(taskflow.NewManager(st))
	fw := waitFill{c: srv.client, prefix: prefix, shards: defaultShards, owners: 1000, workers: 4, batch: 500}
	now := time.Now()
	future := func(i int) time.Time { return now.Add(24*time.Hour + time.Duration(i)*time.Millisecond) }

	base, err := stableMemory(ctx, srv.client)
	if err != nil {
		return err
	}
	type result struct {
		size               int
		med, lo, hi        float64
		trips, cmds        float64
		cmdSummary         string
		memEach            float64
		fillTime           time.Duration
		stillWaitingReport int
	}
	// tickRound times one round of ticks at size waiting flows, nothing
	// due, and returns their median (us).
	tickRound := func(size int) (float64, error) {
		times := make([]float64, 0, r.sz.ticksPerRound)
		for i := 0; i < r.sz.ticksPerRound; i++ {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			t := time.Now()
			rep := eng.TickAt(ctx, t)
			times = append(times, float64(time.Since(t).Microseconds()))
			if rep.Err != nil || rep.Resumed != 0 || rep.Cancelled != 0 || rep.Fired+rep.Skipped != 0 || rep.StillWaiting != size {
				return 0, fmt.Errorf("tick at %d waiting: unexpected report %+v (err %v)", size, rep, rep.Err)
			}
		}
		return median(times), nil
	}
	// measure times rounds of ticks (after a warm-up) at size waiting
	// flows, nothing due.
	measure := func(size int) (result, error) {
		for i := 0; i < 5; i++ {
			eng.TickAt(ctx, time.Now())
		}
		var roundMeds []float64
		hook.reset()
		for round := 0; round < r.cfg.Rounds; round++ {
			m, err := tickRound(size)
			if err != nil {
				return result{}, err
			}
			roundMeds = append(roundMeds, m)
		}
		ticks := r.cfg.Rounds * r.sz.ticksPerRound
		lo, hi := minMax(roundMeds)
		return result{
			size: size, med: median(roundMeds), lo: lo, hi: hi,
			trips: float64(hook.trips.Load()) / float64(ticks), cmds: float64(hook.cmds.Load()) / float64(ticks),
			cmdSummary:         perTick(hook.summary(), ticks),
			stillWaitingReport: size,
		}, nil
	}
	var results []result
	filled := 0
	for _, size := range []int{r.sz.tickSmall, r.sz.tickLarge} {
		t0 := time.Now()
		if _, err := fw.fill(ctx, filled, size-filled, now.Add(-time.Minute), now.Add(-time.Minute), future); err != nil {
			return err
		}
		fillTime := time.Since(t0)
		filled = size
		mem, err := stableMemory(ctx, srv.client)
		if err != nil {
			return err
		}
		res, err := measure(size)
		if err != nil {
			return err
		}
		res.memEach = float64(mem.data()-base.data()) / float64(size)
		res.fillTime = fillTime
		results = append(results, res)
	}
	// The same flow space with idle schedules, every one due a day
	// ahead, against none: rounds alternate between the two (the
	// schedules' indexes renamed away for "none"), so a machine whose
	// speed drifts during the run weighs on both alike.
	t0 := time.Now()
	if err := fillSchedules(ctx, st, srv.client, prefix, r.sz.tickSchedules, now.Add(24*time.Hour)); err != nil {
		return err
	}
	schedFill := time.Since(t0)
	park := func(on bool) error {
		for _, k := range []string{":{sched}:due", ":{sched}:names"} {
			from, to := prefix+k, prefix+k+".parked"
			if !on {
				from, to = to, from
			}
			if err := srv.client.Rename(ctx, from, to).Err(); err != nil {
				return err
			}
		}
		return nil
	}
	var withMeds, noneMeds []float64
	for round := 0; round < r.cfg.Rounds; round++ {
		for _, parked := range []bool{false, true} {
			if parked {
				if err := park(true); err != nil {
					return err
				}
			}
			for i := 0; i < 5; i++ {
				eng.TickAt(ctx, time.Now())
			}
			m, err := tickRound(r.sz.tickLarge)
			if err != nil {
				return err
			}
			if parked {
				noneMeds = append(noneMeds, m)
				if err := park(false); err != nil {
					return err
				}
			} else {
				withMeds = append(withMeds, m)
			}
		}
	}
	fmt.Fprintf(r.out, "WaitEngine.TickAt(now) with every timer a day ahead (nothing due), %d shards, private Redis;\n", defaultShards)
	fmt.Fprintf(r.out, "%d timed ticks per round, median per round, then median of the rounds. Flows written directly with\n", r.sz.ticksPerRound)
	fmt.Fprintln(r.out, "pipelines (shape checked against the Manager first: identical keys, fields, events and index entries).")
	var rows [][]string
	for _, x := range results {
		rows = append(rows, []string{n(x.size), f(x.med, 0), f(x.lo, 0) + "-" + f(x.hi, 0), f(x.trips, 1), f(x.cmds, 1),
			n(x.stillWaitingReport), f(x.memEach, 0), x.fillTime.Round(10 * time.Millisecond).String()})
	}
	table(r.out, []string{"waiting flows", "tick us (median)", "round medians", "round trips/tick", "commands/tick", "still_waiting", "bytes/waiting flow", "fill time"}, rows)
	fmt.Fprintf(r.out, "commands per tick: %s\n", results[len(results)-1].cmdSummary)
	ratio := results[1].med / results[0].med
	fmt.Fprintln(r.out)
	table(r.out, []string{"ratio", "value", "target", "verdict"}, [][]string{
		{fmt.Sprintf("tick time at %s / at %s waiting", n(results[1].size), n(results[0].size)), f(ratio, 2), "<= 1.5", verdict(ratio <= 1.5)},
	})
	fmt.Fprintln(r.out, "(bytes/waiting flow: empty state, 3 events, status+owner+timers entries; used_memory delta over all flows so far.)")

	fmt.Fprintln(r.out)
	fmt.Fprintf(r.out, "The same flow space (%s waiting flows) with %s idle schedules, every one due a day ahead\n", n(r.sz.tickLarge), n(r.sz.tickSchedules))
	fmt.Fprintf(r.out, "(written with pipelines in the shape Manager.CreateSchedule writes, in %s), rounds alternating with none:\n", schedFill.Round(10*time.Millisecond))
	wlo, whi := minMax(withMeds)
	nlo, nhi := minMax(noneMeds)
	table(r.out, []string{"schedules", "tick us (median)", "round medians"}, [][]string{
		{"0", f(median(noneMeds), 0), f(nlo, 0) + "-" + f(nhi, 0)},
		{n(r.sz.tickSchedules), f(median(withMeds), 0), f(wlo, 0) + "-" + f(whi, 0)},
	})
	sratio := median(withMeds) / median(noneMeds)
	table(r.out, []string{"ratio", "value", "target", "verdict"}, [][]string{
		{fmt.Sprintf("tick time with %s idle schedules / with none", n(r.sz.tickSchedules)), f(sratio, 2), "<= 1.5", verdict(sratio <= 1.5)},
	})
	return nil
}

// fillSchedules writes count schedules, each due at due, in the shape
// Manager.CreateSchedule writes: one is created through the Manager and
// the rest copied from it with their own name and id.
func fillSchedules(ctx context.Context, st *taskflow.RedisStore, c redis.UniversalClient, prefix string, count int, due time.Time) error {
	m := taskflow.NewManager(st)
	in := taskflow.ScheduleInput{Name: "bench-0", Every: 24 * time.Hour, Start: due,
		Flow: taskflow.CreateManagedInput{ControllerID: "bench/schedule", Goal: "an idle schedule", OwnerSessionKey: "bench"}}
	if _, err := m.CreateSchedule(ctx, in); err != nil {
		return err
	}
	tag := prefix + ":{sched}"
	tmpl, err := c.HGetAll(ctx, tag+":s:bench-0").Result()
	if err != nil {
		return err
	}
	score, err := c.ZScore(ctx, tag+":due", "bench-0").Result()
	if err != nil {
		return err
	}
	for from := 1; from < count; from += 1000 {
		pipe := c.Pipeline()
		for i := from; i < min(from+1000, count); i++ {
			name := "bench-" + strconv.Itoa(i)
			h := make(map[string]any, len(tmpl))
			for k, v := range tmpl {
				h[k] = v
			}
			h["spec"] = strings.Replace(tmpl["spec"], `"name":"bench-0"`, `"name":"`+name+`"`, 1)
			h["id"] = uuid.NewString()
			pipe.HSet(ctx, tag+":s:"+name, h)
			pipe.ZAdd(ctx, tag+":due", redis.Z{Score: score, Member: name})
			pipe.ZAdd(ctx, tag+":names", redis.Z{Score: 0, Member: name})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
	}
	if got := c.ZCard(ctx, tag+":due").Val(); got != int64(count) {
		return fmt.Errorf("schedule fill: %d due, want %d", got, count)
	}
	return nil
}

// perTick divides a "NAME xN" summary by ticks.
func perTick(summary string, ticks int) string {
	if ticks == 0 || summary == "" {
		return summary
	}
	parts := strings.Split(summary, ", ")
	for i, p := range parts {
		name, cnt, ok := strings.Cut(p, " x")
		if !ok {
			continue
		}
		c, _ := strconv.Atoi(cnt)
		parts[i] = fmt.Sprintf("%s x%s", name, f(float64(c)/float64(ticks), 1))
	}
	return strings.Join(parts, ", ")
}
