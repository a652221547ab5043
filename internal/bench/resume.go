package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/taskflow-dev/taskflow"
)

// resume: how fast 1 and 4 engines (separate clients) resume N due
// timers, ticking concurrently until nothing is due, on a private server.
func (r *runner) resume(ctx context.Context) error {
	srv, err := r.startServer(ctx)
	if err != nil {
		return err
	}
	defer srv.kill()
	if err := checkFillFidelity(ctx, srv.client, r.newPrefix("fid")); err != nil {
		return err
	}
	engineCounts := []int{1, 4}
	runs := map[int][]resumeRun{}
	var verified int
	N := r.sz.resumeFlows
	for round := 0; round < r.cfg.Rounds; round++ {
		for _, k := range engineCounts {
			prefix := r.newPrefix("resume")
			res, nv, err := r.resumeOnce(ctx, srv, prefix, N, k)
			cctx, cancel := cleanupCtx(ctx)
			_, derr := deletePrefix(cctx, srv.client, prefix)
			cancel()
			if err != nil {
				return err
			}
			if derr != nil {
				return derr
			}
			verified += nv
			runs[k] = append(runs[k], res)
		}
	}
	fmt.Fprintf(r.out, "%s due timers (deadlines in the past) per run; k engines, each with its own client, store and manager,\n", n(N))
	fmt.Fprintln(r.out, "call TickAt(now) concurrently until nothing is due; default tick batch (100/shard). Private Redis.")
	fmt.Fprintln(r.out, "scripts/resume = EVALSHA calls (INFO commandstats) per resumed flow: above 1 is work engines duplicated.")
	var rows [][]string
	meds := map[int]float64{}
	for _, k := range engineCounts {
		pick := func(g func(resumeRun) float64) float64 { return medianBy(runs[k], g) }
		rates := make([]float64, len(runs[k]))
		for i, x := range runs[k] {
			rates[i] = x.rate
		}
		lo, hi := minMax(rates)
		meds[k] = pick(func(x resumeRun) float64 { return x.rate })
		rows = append(rows, []string{strconv.Itoa(k), n(N), f(pick(func(x resumeRun) float64 { return x.secs }), 2),
			f(meds[k], 0), f(lo, 0) + "-" + f(hi, 0), f(pick(func(x resumeRun) float64 { return x.scriptsPerResume }), 2),
			f(pick(func(x resumeRun) float64 { return x.ticks }), 1)})
	}
	table(r.out, []string{"engines", "due flows", "seconds", "resumes/s", "range", "scripts/resume", "TickAt calls"}, rows)
	fmt.Fprintf(r.out, "4 engines / 1 engine: %sx. Every run resumed each flow exactly once (sum of TickReport.Resumed = %s,\n", f(meds[4]/meds[1], 2), n(N))
	fmt.Fprintf(r.out, "no errors, 0 left waiting), and %d sampled flows read back through the Manager as running, no wait,\n", verified)
	fmt.Fprintln(r.out, "revision 3, newest event \"resumed\".")
	return nil
}

// resumeRun is one resume run's figures.
type resumeRun struct {
	secs, rate, scriptsPerResume, ticks float64
}

// resumeOnce fills n due flows under prefix and resumes them with k
// engines; it returns the run's figures and how many flows it verified.
func (r *runner) resumeOnce(ctx context.Context, srv *server, prefix string, n, k int) (res resumeRun, verified int, err error) {
	now := time.Now()
	fw := waitFill{c: srv.client, prefix: prefix, shards: defaultShards, owners: 1000, workers: 4, batch: 500}
	ids, err := fw.fill(ctx, 0, n, now.Add(-2*time.Hour), now.Add(-2*time.Hour), func(i int) time.Time {
		return now.Add(-time.Hour + time.Duration(i%3600000)*time.Microsecond)
	})
	if err != nil {
		return res, 0, err
	}
	type engine struct {
		c   *redis.Client
		e   *taskflow.WaitEngine
		m   *taskflow.Manager
		st  *taskflow.RedisStore
		rep taskflow.TickReport
		n   int
		err error
	}
	engines := make([]*engine, k)
	for i := range engines {
		c := srv.newClient()
		defer c.Close()
		st, err := taskflow.NewRedisStore(c, taskflow.WithPrefix(prefix))
		if err != nil {
			return res, 0, err
		}
		if err := st.LoadScripts(ctx); err != nil {
			return res, 0, err
		}
		if err := c.Ping(ctx).Err(); err != nil {
			return res, 0, err
		}
		m := taskflow.NewManager(st)
		engines[i] = &engine{c: c, st: st, m: m, e: taskflow.NewWaitEngine(m)}
	}
	before, err := commandStats(ctx, srv.client)
	if err != nil {
		return res, 0, err
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, en := range engines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				rep := en.e.TickAt(ctx, time.Now())
				en.n++
				en.rep.Resumed += rep.Resumed
				en.rep.Cancelled += rep.Cancelled
				en.rep.Errors += rep.Errors
				if rep.Err != nil && en.err == nil {
					en.err = rep.Err
				}
				if rep.Resumed+rep.Cancelled > 0 {
					continue
				}
				due, err := dueCount(ctx, en.c, prefix, time.Now())
				if err != nil {
					en.err = err
					return
				}
				if due == 0 {
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return res, 0, err
	}
	after, err := commandStats(ctx, srv.client)
	if err != nil {
		return res, 0, err
	}
	total, ticks := 0, 0
	for _, en := range engines {
		if en.err != nil || en.rep.Errors > 0 {
			return res, 0, fmt.Errorf("engine errors: %d, first: %v", en.rep.Errors, en.err)
		}
		if en.rep.Cancelled != 0 {
			return res, 0, fmt.Errorf("engine cancelled %d flows, none had a cancel request", en.rep.Cancelled)
		}
		total += en.rep.Resumed
		ticks += en.n
	}
	if total != n {
		return res, 0, fmt.Errorf("%d engines resumed %d flows in total, want exactly %d", k, total, n)
	}
	// Check through the real Manager: a sample, and the indexes.
	m := engines[0].m
	waiting, err := m.ListByStatus(ctx, taskflow.StatusWaiting, taskflow.WithLimit(10))
	if err != nil {
		return res, 0, err
	}
	if len(waiting) != 0 {
		return res, 0, fmt.Errorf("%d flows still listed as waiting after the run", len(waiting))
	}
	sample := min(100, len(ids))
	for _, i := range rand.Perm(len(ids))[:sample] {
		if err := verifyResumed(ctx, m, ids[i]); err != nil {
			return res, 0, err
		}
	}
	ev := scriptDelta(before, after)
	res.secs = elapsed.Seconds()
	res.rate = float64(n) / elapsed.Seconds()
	res.scriptsPerResume = float64(ev.calls) / float64(n)
	res.ticks = float64(ticks)
	return res, sample, nil
}

func verifyResumed(ctx context.Context, m *taskflow.Manager, id uuid.UUID) error {
	fl, err := m.Get(ctx, id)
	if err != nil {
		return fmt.Errorf("verify %s: %w", id, err)
	}
	if fl.Status != taskflow.StatusRunning || fl.Wait != nil || fl.Revision != 3 || fl.CancelRequested {
		return fmt.Errorf("verify %s: status %s, wait %s, revision %d: want running, no wait, revision 3", id, fl.Status, fl.Wait, fl.Revision)
	}
	evs, err := m.ListEvents(ctx, id, 1)
	if err != nil {
		return err
	}
	if len(evs) != 1 || evs[0].Kind != taskflow.EventResumed || evs[0].Revision != 3 {
		return fmt.Errorf("verify %s: newest event %+v, want resumed at revision 3", id, evs)
	}
	return nil
}

// dueCount counts timers due at now over every shard of prefix.
func dueCount(ctx context.Context, c redis.UniversalClient, prefix string, now time.Time) (int64, error) {
	pipe := c.Pipeline()
	cmds := make([]*redis.IntCmd, defaultShards)
	for s := range cmds {
		cmds[s] = pipe.ZCount(ctx, prefix+":{"+strconv.Itoa(s)+"}:timers", "-inf", strconv.FormatInt(now.UnixMilli(), 10))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, err
	}
	var total int64
	for _, c := range cmds {
		total += c.Val()
	}
	return total, nil
}
