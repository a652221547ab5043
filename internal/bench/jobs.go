package bench

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/taskflow-dev/taskflow"
)

// jobsController is the controller whose ready queue the jobs suite's
// taskflow workers drain.
const jobsController = "bench/jobs"

// jobsShape is one claim + finish configuration: workers processes, each
// running loops concurrent loops (BullMQ: Worker concurrency).
type jobsShape struct{ workers, loops int }

func (s jobsShape) String() string {
	if s.workers == 1 {
		return fmt.Sprintf("1 worker x %d loops", s.loops)
	}
	return fmt.Sprintf("%d workers x %d loops", s.workers, s.loops)
}

// jobsSpec sizes one pass.
type jobsSpec struct {
	items, producers int
	shape            jobsShape
}

// jobsSystem is one side of the comparison, for one pass: open connects
// (outside every measured window), create adds the items and prepare
// starts the idle workers, drain claims and finishes every item, close
// stops the workers and checks that every item finished once, cleanup
// deletes the pass's keys.
type jobsSystem interface {
	name() string
	open(ctx context.Context) error
	create(ctx context.Context) (secs float64, err error)
	prepare(ctx context.Context) error
	drain(ctx context.Context) (secs float64, err error)
	close(ctx context.Context) error
	cleanup(ctx context.Context) error
}

// jobsPass is what one pass of one system measured.
type jobsPass struct {
	items                 int
	createSecs, drainSecs float64
	create, drain         map[string]cmdStat // INFO commandstats deltas ("info" left out)
	cpuSecs               float64            // server CPU (user+sys) over both windows
	memBytes              int64              // used_memory less client buffers, after - before
}

func (p jobsPass) cmds() map[string]cmdStat {
	out := map[string]cmdStat{}
	for _, m := range []map[string]cmdStat{p.create, p.drain} {
		for k, v := range m {
			s := out[k]
			s.calls += v.calls
			s.usec += v.usec
			out[k] = s
		}
	}
	return out
}

func (p jobsPass) usecPerItem() float64 {
	var t int64
	for _, v := range p.cmds() {
		t += v.usec
	}
	return float64(t) / float64(p.items)
}

// jobsSnap is the server's counters at one instant.
type jobsSnap struct {
	stats map[string]cmdStat
	cpu   float64
}

func snapServer(ctx context.Context, c redis.UniversalClient) (jobsSnap, error) {
	st, err := commandStats(ctx, c)
	if err != nil {
		return jobsSnap{}, err
	}
	cpu, err := serverCPU(ctx, c)
	return jobsSnap{stats: st, cpu: cpu}, err
}

// serverCPU is INFO cpu used_cpu_user + used_cpu_sys, in seconds.
func serverCPU(ctx context.Context, c redis.UniversalClient) (float64, error) {
	s, err := c.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, err
	}
	var t float64
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			x, _ := strconv.ParseFloat(v, 64)
			t += x
		}
	}
	return t, nil
}

// statsDelta is after-before for every command but INFO (the harness's own
// reads, and the clients' version checks at connect).
func statsDelta(before, after map[string]cmdStat) map[string]cmdStat {
	out := map[string]cmdStat{}
	for name := range after {
		if name == "info" {
			continue
		}
		if d := statDelta(before, after, name); d.calls != 0 || d.usec != 0 {
			out[name] = d
		}
	}
	return out
}

// runJobsPass runs one pass of sys against the server whose client is c:
// memory and counters before, create, counters, prepare, counters, drain,
// counters, close, memory after, cleanup (also on error).
func runJobsPass(ctx context.Context, c redis.UniversalClient, sys jobsSystem, items int) (res jobsPass, err error) {
	res.items = items
	defer func() {
		cctx, cancel := cleanupCtx(ctx)
		defer cancel()
		if cerr := sys.cleanup(cctx); cerr != nil && err == nil {
			err = fmt.Errorf("%s: cleanup: %w", sys.name(), cerr)
		}
	}()
	if err := sys.open(ctx); err != nil {
		_ = sys.close(ctx)
		return res, fmt.Errorf("%s: open: %w", sys.name(), err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = sys.close(ctx)
		}
	}()
	mem0, err := stableMemory(ctx, c)
	if err != nil {
		return res, err
	}
	s0, err := snapServer(ctx, c)
	if err != nil {
		return res, err
	}
	if res.createSecs, err = sys.create(ctx); err != nil {
		return res, fmt.Errorf("%s: create: %w", sys.name(), err)
	}
	s1, err := snapServer(ctx, c)
	if err != nil {
		return res, err
	}
	if err := sys.prepare(ctx); err != nil {
		return res, fmt.Errorf("%s: start workers: %w", sys.name(), err)
	}
	s2, err := snapServer(ctx, c)
	if err != nil {
		return res, err
	}
	if res.drainSecs, err = sys.drain(ctx); err != nil {
		return res, fmt.Errorf("%s: claim + finish: %w", sys.name(), err)
	}
	s3, err := snapServer(ctx, c)
	if err != nil {
		return res, err
	}
	closed = true
	if err := sys.close(ctx); err != nil {
		return res, fmt.Errorf("%s: close: %w", sys.name(), err)
	}
	mem1, err := stableMemory(ctx, c)
	if err != nil {
		return res, err
	}
	res.create = statsDelta(s0.stats, s1.stats)
	res.drain = statsDelta(s2.stats, s3.stats)
	res.cpuSecs = (s1.cpu - s0.cpu) + (s3.cpu - s2.cpu)
	res.memBytes = mem1.data() - mem0.data()
	return res, nil
}

// tfJobs is the taskflow half of one pass: items running flows of one
// controller created by producers goroutines on one client, then claimed
// and finished under their leases by shape.workers managers (each its own
// client and store) running shape.loops goroutines each.
type tfJobs struct {
	newClient func() *redis.Client
	prefix    string
	spec      jobsSpec

	prodClient *redis.Client
	producer   *taskflow.Manager
	workers    []*fleetWorker
}

func (t *tfJobs) name() string { return "taskflow" }

func (t *tfJobs) open(ctx context.Context) error {
	t.prodClient = t.newClient()
	st, err := taskflow.NewRedisStore(t.prodClient, taskflow.WithPrefix(t.prefix))
	if err == nil {
		err = st.LoadScripts(ctx)
	}
	if err != nil {
		return err
	}
	t.producer = taskflow.NewManager(st)
	return nil
}

func (t *tfJobs) create(ctx context.Context) (float64, error) {
	start := time.Now()
	err := parallel(ctx, t.spec.producers, t.spec.items, func(ctx context.Context, i int) error {
		_, err := t.producer.CreateMirrored(ctx, taskflow.CreateManagedInput{
			ControllerID: jobsController, Goal: "job",
			OwnerSessionKey: "agent:jobs:session:p-" + strconv.Itoa(i%t.spec.producers),
			State:           map[string]any{"message": i},
		})
		return err
	})
	return time.Since(start).Seconds(), err
}

// prepare opens the workers and lets each one Claim once on the empty
// queue (there is none: the flows are ready) — so the subscription a
// waiting Claim uses is open before the clock starts.
func (t *tfJobs) prepare(ctx context.Context) error {
	for i := 0; i < t.spec.shape.workers; i++ {
		c := t.newClient()
		st, err := taskflow.NewRedisStore(c, taskflow.WithPrefix(t.prefix))
		if err == nil {
			err = st.LoadScripts(ctx)
		}
		if err != nil {
			_ = c.Close()
			return err
		}
		t.workers = append(t.workers, &fleetWorker{id: "worker-" + strconv.Itoa(i), c: c, m: taskflow.NewManager(st)})
	}
	return nil
}

func (t *tfJobs) drain(ctx context.Context) (float64, error) {
	return drainClaims(ctx, t.workers, jobsController, t.spec.shape.loops, t.spec.items, true)
}

// drainClaims claims and finishes n flows of controller with loops
// goroutines per worker: Claim (lease 1 min, wait 1 s), then Finish under
// the lease; with next, the Finish hands the worker its next flow in the
// same script (WithNext) while its shard has one ready. It returns the
// seconds the drain took, and fails when a flow was claimed twice or not
// all were finished.
func drainClaims(ctx context.Context, ws []*fleetWorker, controller string, loops, n int, next bool) (float64, error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		done, dupes atomic.Int64
		seen        sync.Map
		wg          sync.WaitGroup
	)
	failed := &firstFailure{cancel: cancel}
	items := int64(n)
	start := time.Now()
	for _, w := range ws {
		for l := 0; l < loops; l++ {
			wg.Add(1)
			id := w.id + "/loop-" + strconv.Itoa(l)
			go func() {
				defer wg.Done()
				for runCtx.Err() == nil {
					fl, lease, err := w.m.Claim(runCtx, controller, id, time.Minute, taskflow.WithClaimWait(time.Second))
					if err != nil {
						if runCtx.Err() == nil {
							failed.fail(fmt.Errorf("%s: claim: %w", id, err))
						}
						return
					}
					for fl != nil {
						if _, loaded := seen.LoadOrStore(fl.ID, id); loaded {
							dupes.Add(1)
						}
						cur := fl.ID
						opts := []taskflow.MutationOption{taskflow.WithLease(lease)}
						if next {
							opts = append(opts, taskflow.WithNext(&fl, &lease, time.Minute))
						} else {
							fl = nil
						}
						if _, err := w.m.Finish(runCtx, cur, nil, opts...); err != nil {
							failed.fail(fmt.Errorf("%s: finish %s: %w", id, cur, err))
							return
						}
						if done.Add(1) == items {
							cancel()
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	if err := failed.first(); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if d := dupes.Load(); d != 0 || done.Load() != items {
		return 0, fmt.Errorf("finished %d flows, %d claimed twice; want %d once each", done.Load(), d, items)
	}
	return secs, nil
}

func (t *tfJobs) close(ctx context.Context) error {
	for _, w := range t.workers {
		_ = w.m.Close()
		_ = w.c.Close()
	}
	t.workers = nil
	if t.producer == nil {
		if t.prodClient != nil {
			_ = t.prodClient.Close()
		}
		return nil
	}
	defer func() { _ = t.prodClient.Close(); t.producer = nil }()
	st, err := t.producer.Stats(ctx)
	if err != nil {
		return err
	}
	if got := st.Flows[taskflow.StatusFinished]; got != int64(t.spec.items) || st.Total != int64(t.spec.items) {
		return fmt.Errorf("%d flows, %d finished after the drain, want %d finished", st.Total, got, t.spec.items)
	}
	return t.producer.Close()
}

func (t *tfJobs) cleanup(ctx context.Context) error {
	c := t.newClient()
	defer func() { _ = c.Close() }()
	_, err := deletePrefix(ctx, c, t.prefix)
	return err
}

// jobs: taskflow against BullMQ on one private Redis, the job-queue shape
// of issue 22 (a job that does nothing), interleaved pass by pass.
func (r *runner) jobs(ctx context.Context) error {
	srv, err := r.startServer(ctx)
	if err != nil {
		return err
	}
	defer srv.kill()
	bull, skip, err := startBullMQ(ctx, srv.addr)
	if err != nil {
		return err
	}
	defer bull.stop()
	return r.jobsOn(ctx, srv, bull, skip)
}

// jobsOn runs the suite's passes on srv (bull nil: taskflow alone, skip
// says why) and prints the tables.
func (r *runner) jobsOn(ctx context.Context, srv *server, bull *nodeProc, skip string) error {
	shapes := r.sz.jobsShapes
	// results[system][shape] over the rounds
	results := map[string][][]jobsPass{"taskflow": make([][]jobsPass, len(shapes)), "BullMQ": make([][]jobsPass, len(shapes))}
	for round := 0; round < r.cfg.Rounds; round++ {
		for si, shape := range shapes {
			spec := jobsSpec{items: r.sz.jobsItems, producers: r.sz.jobsProducers, shape: shape}
			newClient := srv.newClient
			if r.cfg.AutoPipeline {
				newClient = srv.newAutoPipelinedClient
			}
			systems := []jobsSystem{&tfJobs{newClient: newClient, prefix: r.newPrefix("jobs"), spec: spec}}
			if bull != nil {
				b := &bullJobs{p: bull, c: srv.client, queue: "tfbench-" + r.runID + "-jobs-" + randHex(3), spec: spec}
				if round%2 == 1 { // alternate who goes first
					systems = []jobsSystem{b, systems[0]}
				} else {
					systems = append(systems, b)
				}
			}
			for _, sys := range systems {
				res, err := runJobsPass(ctx, srv.client, sys, spec.items)
				if err != nil {
					return fmt.Errorf("round %d, %s: %w", round+1, shape, err)
				}
				results[sys.name()][si] = append(results[sys.name()][si], res)
			}
		}
	}
	r.jobsReport(shapes, results, bull, skip)
	return nil
}

// jobsReport prints the comparison table and the per-command breakdown.
func (r *runner) jobsReport(shapes []jobsShape, results map[string][][]jobsPass, bull *nodeProc, skip string) {
	w := r.out
	items := r.sz.jobsItems
	if bull != nil {
		fmt.Fprintf(w, "BullMQ %s (ioredis %s, Node %s), installed with npm into a temp dir; taskflow from this build.\n", bull.bullmq, bull.ioredis, bull.node)
	} else {
		fmt.Fprintln(w, skip)
	}
	if r.cfg.AutoPipeline {
		fmt.Fprintln(w, "taskflow's clients are built with go-redis's AutoPipelineOptions (--autopipeline): its stores send their scripts through the AutoPipeliner.")
	}
	fmt.Fprintf(w, "One private Redis. Each round, for each worker shape, one pass per system (the first system alternates by round):\n")
	fmt.Fprintf(w, "%s items created by %d concurrent producers on one client (taskflow: CreateMirrored, a running flow on its\n", n(items), r.sz.jobsProducers)
	fmt.Fprintln(w, "controller's ready queue, state {\"message\": i}; BullMQ: Queue.add of {message: i}, default options, so the")
	fmt.Fprintln(w, "completed jobs stay), then claimed and finished by the shape's workers (taskflow: a Manager per worker, each")
	fmt.Fprintln(w, "loop Claim(lease 1 min, wait 1 s) -> Finish(nil, WithLease); BullMQ: a Worker per worker with that concurrency")
	fmt.Fprintln(w, "and a processor that does nothing). The pass's keys are deleted after it. Figures: medians over rounds (range).")
	fmt.Fprintln(w, "Redis time = INFO commandstats usec summed over every command but INFO, create + claim/finish windows; a script's")
	fmt.Fprintln(w, "usec already includes the commands it calls, which commandstats counts again under their own names. Redis CPU =")
	fmt.Fprintln(w, "INFO cpu used_cpu_user + used_cpu_sys over the same windows. Memory = used_memory less client buffers after")
	fmt.Fprintln(w, "the pass (workers closed) minus before it, per item: the finished item with its history (taskflow: the flow")
	fmt.Fprintln(w, "and its audit log; BullMQ: the completed job and its events stream, capped at ~10,000 entries by default).")

	tf := results["taskflow"]
	bq := results["BullMQ"]
	all := func(per [][]jobsPass) []jobsPass {
		var out []jobsPass
		for _, p := range per {
			out = append(out, p...)
		}
		return out
	}
	cell := func(ps []jobsPass, g func(jobsPass) float64, d int) (string, float64) {
		if len(ps) == 0 {
			return "skipped", 0
		}
		vs := make([]float64, len(ps))
		for i, p := range ps {
			vs[i] = g(p)
		}
		m := median(vs)
		lo, hi := minMax(vs)
		if len(vs) == 1 {
			return f(m, d), m
		}
		return f(m, d) + " (" + f(lo, d) + "-" + f(hi, d) + ")", m
	}
	var rows [][]string
	row := func(label string, a, b []jobsPass, g func(jobsPass) float64, d int) {
		ca, ma := cell(a, g, d)
		cb, mb := cell(b, g, d)
		ratio := ""
		if mb != 0 && len(a) > 0 && len(b) > 0 {
			ratio = f(ma/mb, 2) + "x"
		}
		rows = append(rows, []string{label, ca, cb, ratio})
	}
	createRate := func(p jobsPass) float64 { return float64(p.items) / p.createSecs }
	drainRate := func(p jobsPass) float64 { return float64(p.items) / p.drainSecs }
	row(fmt.Sprintf("create / add, %d producers (items/s), all passes", r.sz.jobsProducers), all(tf), all(bq), createRate, 0)
	for si, s := range shapes {
		row(fmt.Sprintf("claim + finish, %s (items/s)", s), tf[si], bq[si], drainRate, 0)
	}
	for si, s := range shapes {
		row(fmt.Sprintf("Redis time per item, commandstats, all commands (us), %dx%d", s.workers, s.loops), tf[si], bq[si], jobsPass.usecPerItem, 1)
	}
	for si, s := range shapes {
		row(fmt.Sprintf("Redis CPU per item, INFO cpu user+sys (us), %dx%d", s.workers, s.loops), tf[si], bq[si],
			func(p jobsPass) float64 { return 1e6 * p.cpuSecs / float64(p.items) }, 1)
	}
	row("memory per finished item with its history (B), all passes", all(tf), all(bq), func(p jobsPass) float64 { return float64(p.memBytes) / float64(p.items) }, 0)
	table(w, []string{"figure", "taskflow", "BullMQ", "ratio taskflow/BullMQ"}, rows)

	for si, s := range shapes {
		fmt.Fprintf(w, "\nWhere the Redis time goes, %s: per item over its life (create or add, then claim and finish), medians:\n", s)
		jobsBreakdown(w, tf[si], bq[si])
	}
}

// jobsBreakdown prints calls and usec per item by command name, for both
// systems, largest time first.
func jobsBreakdown(w io.Writer, tf, bq []jobsPass) {
	names := map[string]bool{}
	for _, ps := range [][]jobsPass{tf, bq} {
		for _, p := range ps {
			for k := range p.cmds() {
				names[k] = true
			}
		}
	}
	type line struct {
		name               string
		tfCalls, tfUs      float64
		bqCalls, bqUs      float64
		tfCreate, bqCreate float64
	}
	per := func(ps []jobsPass, name string) (calls, us, createCalls float64) {
		if len(ps) == 0 {
			return 0, 0, 0
		}
		calls = medianBy(ps, func(p jobsPass) float64 { return float64(p.cmds()[name].calls) / float64(p.items) })
		us = medianBy(ps, func(p jobsPass) float64 { return float64(p.cmds()[name].usec) / float64(p.items) })
		createCalls = medianBy(ps, func(p jobsPass) float64 { return float64(p.create[name].calls) / float64(p.items) })
		return
	}
	var lines []line
	for name := range names {
		l := line{name: name}
		l.tfCalls, l.tfUs, l.tfCreate = per(tf, name)
		l.bqCalls, l.bqUs, l.bqCreate = per(bq, name)
		lines = append(lines, l)
	}
	sort.Slice(lines, func(i, j int) bool {
		a, b := max(lines[i].tfUs, lines[i].bqUs), max(lines[j].tfUs, lines[j].bqUs)
		if a != b {
			return a > b
		}
		return lines[i].name < lines[j].name
	})
	var rows [][]string
	var tfTotal, bqTotal [3]float64
	var other [2]float64
	var others []string
	for _, l := range lines {
		if max(l.tfCalls, l.bqCalls) < 0.05 && max(l.tfUs, l.bqUs) < 0.05 {
			others = append(others, strings.ToUpper(l.name))
			other[0] += l.tfCalls
			other[1] += l.bqCalls
		} else {
			rows = append(rows, []string{strings.ToUpper(l.name),
				f(l.tfCalls, 2), f(l.tfCreate, 2), f(l.tfUs, 1),
				f(l.bqCalls, 2), f(l.bqCreate, 2), f(l.bqUs, 1)})
		}
		tfTotal[0] += l.tfCalls
		tfTotal[1] += l.tfCreate
		tfTotal[2] += l.tfUs
		bqTotal[0] += l.bqCalls
		bqTotal[1] += l.bqCreate
		bqTotal[2] += l.bqUs
	}
	if len(others) > 0 {
		sort.Strings(others)
		rows = append(rows, []string{fmt.Sprintf("%d others, each < 0.05", len(others)),
			f(other[0], 2), "", "", f(other[1], 2), "", ""})
	}
	rows = append(rows, []string{"sum of the medians",
		f(tfTotal[0], 2), f(tfTotal[1], 2), f(tfTotal[2], 1), f(bqTotal[0], 2), f(bqTotal[1], 2), f(bqTotal[2], 1)})
	headers := []string{"command", "taskflow calls/item", "of which create", "taskflow us/item", "BullMQ calls/item", "of which add", "BullMQ us/item"}
	if len(bq) == 0 { // BullMQ skipped: taskflow's columns only
		headers = headers[:4]
		for i := range rows {
			rows[i] = rows[i][:4]
		}
	}
	table(w, headers, rows)
	if len(others) > 0 {
		fmt.Fprintf(w, "others: %s\n", strings.Join(others, ", "))
	}
}
