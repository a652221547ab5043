package bench

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/taskflow-dev/taskflow"
)

// limitsController is the controller whose flows the limits suite drains.
const limitsController = "bench/limits"

// limitsNeverBinds is the concurrency of the limits suite's keys: more
// than any pass has flows, so a limit is read and a slot held on every
// claim, and no claim ever waits for one.
const limitsNeverBinds = 1_000_000

// limitsTenants is how many tenant keys (fair groups) the keyed passes
// spread their flows over.
const limitsTenants = 10

// limitsVariant is one side of the comparison: the flows' keys (0: none,
// 1: a tenant key, 2: a tenant key and a model key, every key with a
// limit that never binds) and whether the finish hands the worker its
// next flow (WithNext).
type limitsVariant struct {
	name string
	keys int
	next bool
}

var limitsVariants = []limitsVariant{
	{name: "off: no keys", keys: 0},
	{name: "on: 1 key (tenant)", keys: 1},
	{name: "on: 2 keys (tenant, model)", keys: 2},
	{name: "off: no keys, Finish WithNext", keys: 0, next: true},
}

// limitsPass is what one pass measured.
type limitsPass struct {
	items                 int
	createSecs, drainSecs float64
	drain                 map[string]cmdStat // INFO commandstats over the drain ("info" left out)
	cpuSecs               float64            // server CPU over the drain
	clientCPU             time.Duration      // this process's CPU over the drain (the workers)
	trips, cmds           int64              // the workers' round trips and commands over the drain
}

func (p limitsPass) rate() float64 { return float64(p.items) / p.drainSecs }

func (p limitsPass) usecPerItem() float64 {
	var t int64
	for _, v := range p.drain {
		t += v.usec
	}
	return float64(t) / float64(p.items)
}

func (p limitsPass) scriptsPerItem() float64 {
	var c int64
	for _, name := range []string{"evalsha", "fcall", "fcall_ro"} {
		c += p.drain[name].calls
	}
	return float64(c) / float64(p.items)
}

// limits: claim + finish with the gate's limits on (flows carrying keys
// whose limits never bind) against off (the same flows without keys), on
// one private Redis, the variants' passes interleaved and their order
// turned by round.
func (r *runner) limits(ctx context.Context) error {
	srv, err := r.startServer(ctx)
	if err != nil {
		return err
	}
	defer srv.kill()
	shape := r.sz.limitsShape
	results := make([][]limitsPass, len(limitsVariants))
	for round := 0; round < r.cfg.Rounds; round++ {
		for j := range limitsVariants {
			vi := (j + round) % len(limitsVariants)
			v := limitsVariants[vi]
			prefix := r.newPrefix("limits")
			res, err := r.limitsOnce(ctx, srv, prefix, v, r.sz.limitsFlows, shape)
			cctx, cancel := cleanupCtx(ctx)
			_, derr := deletePrefix(cctx, srv.client, prefix)
			cancel()
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round+1, v.name, err)
			}
			if derr != nil {
				return derr
			}
			results[vi] = append(results[vi], res)
		}
	}
	r.limitsReport(results, shape)
	return nil
}

// limitsOnce runs one pass: n flows of variant v created by 16
// producers, then claimed and finished by shape's workers.
func (r *runner) limitsOnce(ctx context.Context, srv *server, prefix string, v limitsVariant, n int, shape jobsShape) (limitsPass, error) {
	res := limitsPass{items: n}
	prodClient := srv.newClient()
	defer func() { _ = prodClient.Close() }()
	st, err := taskflow.NewRedisStore(prodClient, taskflow.WithPrefix(prefix))
	if err == nil {
		err = st.LoadScripts(ctx)
	}
	if err != nil {
		return res, err
	}
	producer := taskflow.NewManager(st)
	defer func() { _ = producer.Close() }()
	var keys []string
	if v.keys > 0 {
		for t := range limitsTenants {
			keys = append(keys, "tenant:"+strconv.Itoa(t))
		}
		keys = append(keys, "model:bench")
		for _, k := range keys {
			if err := producer.SetKeyLimit(ctx, taskflow.KeyLimit{Key: k, Concurrency: limitsNeverBinds}); err != nil {
				return res, err
			}
		}
	}
	ws, closeAll, err := newFleetWorkers(ctx, srv, prefix, shape.workers)
	if err != nil {
		return res, err
	}
	defer closeAll()
	// Subscribe before the fill, so the timed part does not include
	// opening the subscription.
	if err := subscribeEmpty(ctx, ws, limitsController); err != nil {
		return res, err
	}
	start := time.Now()
	if err := parallel(ctx, 16, n, func(ctx context.Context, i int) error {
		in := taskflow.CreateManagedInput{
			ControllerID: limitsController, Goal: "call " + strconv.Itoa(i),
			OwnerSessionKey: "agent:limits:session:p-" + strconv.Itoa(i%16),
			State:           map[string]any{"message": i},
		}
		switch v.keys {
		case 1:
			in.Concurrency = []string{keys[i%limitsTenants]}
		case 2:
			in.Concurrency = []string{keys[i%limitsTenants], "model:bench"}
		}
		_, err := producer.CreateMirrored(ctx, in)
		return err
	}); err != nil {
		return res, err
	}
	res.createSecs = time.Since(start).Seconds()
	// Let the fill's announcements reach the workers' subscriptions
	// before the clock starts.
	time.Sleep(50 * time.Millisecond)
	for _, w := range ws {
		w.hook.reset()
	}
	before, err := snapServer(ctx, srv.client)
	if err != nil {
		return res, err
	}
	cpu0 := processCPU()
	res.drainSecs, err = drainClaims(ctx, ws, limitsController, shape.loops, n, v.next)
	if err != nil {
		return res, err
	}
	res.clientCPU = processCPU() - cpu0
	after, err := snapServer(ctx, srv.client)
	if err != nil {
		return res, err
	}
	res.drain = statsDelta(before.stats, after.stats)
	res.cpuSecs = after.cpu - before.cpu
	for _, w := range ws {
		res.trips += w.hook.trips.Load()
		res.cmds += w.hook.cmds.Load()
	}
	// Every flow finished; no slot is held, no flow queued.
	stats, err := producer.Stats(ctx)
	if err != nil {
		return res, err
	}
	if got := stats.Flows[taskflow.StatusFinished]; got != int64(n) || stats.Total != int64(n) {
		return res, fmt.Errorf("%d flows, %d finished after the drain, want %d finished", stats.Total, got, n)
	}
	use, err := producer.KeyLimits(ctx)
	if err != nil {
		return res, err
	}
	if len(use) != len(keys) {
		return res, fmt.Errorf("%d keys with a limit, want %d", len(use), len(keys))
	}
	for _, u := range use {
		if u.InFlight != 0 || u.Backlog != 0 {
			return res, fmt.Errorf("after the drain, key %s: %d in flight, %d queued", u.Key, u.InFlight, u.Backlog)
		}
	}
	return res, nil
}

// limitsReport prints the variants' medians, the on/off ratios, and where
// the Redis time of the drain goes.
func (r *runner) limitsReport(results [][]limitsPass, shape jobsShape) {
	w := r.out
	fmt.Fprintf(w, "%s running flows of one controller per pass, created by 16 producers (CreateMirrored), then claimed and\n", n(r.sz.limitsFlows))
	fmt.Fprintf(w, "finished by %s (a Manager per worker; each loop Claim(lease 1 min, wait 1 s) -> Finish(nil, WithLease)).\n", shape)
	fmt.Fprintf(w, "on: each flow carries keys, every key with KeyLimit{Concurrency: %s}, which never binds (the gate reads the\n", n(limitsNeverBinds))
	fmt.Fprintf(w, "limit and holds a slot on every claim): a tenant key of %d (its fair group), and in the 2-key variant a model key\n", limitsTenants)
	fmt.Fprintln(w, "all flows share. off: the same flows with no key. The last variant finishes WithNext, which hands the worker")
	fmt.Fprintln(w, "the next flow of its shard in the finish's script (a flow in the gate cannot be handed so). One private Redis;")
	fmt.Fprintln(w, "each round runs every variant once, in an order turned by round. Figures: medians over rounds (range). Redis time =")
	fmt.Fprintln(w, "INFO commandstats usec of every command but INFO over the drain (a script's usec includes the commands it calls,")
	fmt.Fprintln(w, "counted again under their own names); Redis CPU = INFO cpu user + sys; client CPU = this process's user + sys")
	fmt.Fprintln(w, "(the workers); scripts = EVALSHA and FCALL calls; round trips = the workers' (go-redis hooks); all over the drain.")
	cell := func(ps []limitsPass, g func(limitsPass) float64, d int) (string, float64) {
		vs := make([]float64, len(ps))
		for i, p := range ps {
			vs[i] = g(p)
		}
		m := median(vs)
		if len(vs) == 1 {
			return f(m, d), m
		}
		lo, hi := minMax(vs)
		return f(m, d) + " (" + f(lo, d) + "-" + f(hi, d) + ")", m
	}
	var rows [][]string
	meds := make([]map[string]float64, len(limitsVariants))
	for i, v := range limitsVariants {
		ps := results[i]
		meds[i] = map[string]float64{}
		row := []string{v.name}
		for _, c := range []struct {
			key string
			g   func(limitsPass) float64
			d   int
		}{
			{"create", func(p limitsPass) float64 { return float64(p.items) / p.createSecs }, 0},
			{"drain", limitsPass.rate, 0},
			{"usec", limitsPass.usecPerItem, 1},
			{"cpu", func(p limitsPass) float64 { return 1e6 * p.cpuSecs / float64(p.items) }, 1},
			{"client", func(p limitsPass) float64 { return float64(p.clientCPU.Microseconds()) / float64(p.items) }, 1},
			{"scripts", limitsPass.scriptsPerItem, 2},
			{"trips", func(p limitsPass) float64 { return float64(p.trips) / float64(p.items) }, 2},
			{"cmds", func(p limitsPass) float64 { return float64(p.cmds) / float64(p.items) }, 2},
		} {
			s, m := cell(ps, c.g, c.d)
			meds[i][c.key] = m
			row = append(row, s)
		}
		rows = append(rows, row)
	}
	table(w, []string{"variant", "create flows/s", "claim + finish flows/s", "Redis time/flow (us)", "Redis CPU/flow (us)",
		"client CPU/flow (us)", "scripts/flow", "round trips/flow", "commands/flow"}, rows)

	fmt.Fprintln(w)
	var rrows [][]string
	ratio := func(label string, on, off int, key string, target float64, higherBetter bool) {
		x := meds[on][key] / meds[off][key]
		v := ""
		if target > 0 {
			ok := x >= target
			if !higherBetter {
				ok = x <= target
			}
			v = verdict(ok)
		}
		tgt := ""
		if target > 0 {
			if higherBetter {
				tgt = "≥ " + f(target, 2) + "x"
			} else {
				tgt = "≤ " + f(target, 2) + "x"
			}
		}
		rrows = append(rrows, []string{label, f(x, 2) + "x", tgt, v})
	}
	ratio("claim + finish flows/s, on 1 key / off", 1, 0, "drain", 0.9, true)
	ratio("claim + finish flows/s, on 2 keys / off", 2, 0, "drain", 0.9, true)
	ratio("claim + finish flows/s, on 1 key / off WithNext", 1, 3, "drain", 0, true)
	ratio("Redis time per flow, on 1 key / off", 1, 0, "usec", 0, false)
	ratio("Redis time per flow, on 2 keys / off", 2, 0, "usec", 0, false)
	ratio("client CPU per flow, on 1 key / off", 1, 0, "client", 0, false)
	ratio("create flows/s, on 1 key / off", 1, 0, "create", 0, true)
	table(w, []string{"ratio of medians", "value", "target", ""}, rrows)

	fmt.Fprintln(w, "\nWhere the drain's Redis time goes, per flow, by command (medians; the script commands' time includes the")
	fmt.Fprintln(w, "commands they call, listed again below them):")
	limitsBreakdown(w, results)
}

// limitsBreakdown prints calls and usec per flow by command, per
// variant, largest time first.
func limitsBreakdown(w io.Writer, results [][]limitsPass) {
	names := map[string]bool{}
	for _, ps := range results {
		for _, p := range ps {
			for k := range p.drain {
				names[k] = true
			}
		}
	}
	per := func(ps []limitsPass, name string) (calls, us float64) {
		calls = medianBy(ps, func(p limitsPass) float64 { return float64(p.drain[name].calls) / float64(p.items) })
		us = medianBy(ps, func(p limitsPass) float64 { return float64(p.drain[name].usec) / float64(p.items) })
		return
	}
	type line struct {
		name  string
		cells []float64 // calls, us per variant
		most  float64
	}
	var lines []line
	for name := range names {
		l := line{name: name}
		for _, ps := range results {
			c, u := per(ps, name)
			l.cells = append(l.cells, c, u)
			l.most = max(l.most, u, c)
		}
		lines = append(lines, l)
	}
	sort.Slice(lines, func(i, j int) bool {
		if lines[i].most != lines[j].most {
			return lines[i].most > lines[j].most
		}
		return lines[i].name < lines[j].name
	})
	headers := []string{"command"}
	for _, v := range limitsVariants {
		short, _, _ := strings.Cut(v.name, " (")
		headers = append(headers, short+": calls", "us")
	}
	var rows [][]string
	var others []string
	for _, l := range lines {
		if l.most < 0.05 {
			others = append(others, strings.ToUpper(l.name))
			continue
		}
		row := []string{strings.ToUpper(l.name)}
		for i, c := range l.cells {
			row = append(row, f(c, map[bool]int{true: 2, false: 1}[i%2 == 0]))
		}
		rows = append(rows, row)
	}
	table(w, headers, rows)
	if len(others) > 0 {
		sort.Strings(others)
		fmt.Fprintf(w, "others, each < 0.05 calls and us per flow: %s\n", strings.Join(others, ", "))
	}
}
