package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
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

// fleetController is the controller whose ready queue the fleet drains.
const fleetController = "kate/fleet-bench"

// fleetWorker is one worker "process": its own client, store and manager.
type fleetWorker struct {
	id   string
	c    *redis.Client
	hook *countHook
	m    *taskflow.Manager
}

// newFleetWorkers opens k workers on prefix, scripts loaded.
func newFleetWorkers(ctx context.Context, srv *server, prefix string, k int) ([]*fleetWorker, func(), error) {
	var ws []*fleetWorker
	closeAll := func() {
		for _, w := range ws {
			_ = w.m.Close()
			_ = w.c.Close()
		}
	}
	for i := 0; i < k; i++ {
		c := srv.newClient()
		hook := newCountHook()
		c.AddHook(hook)
		st, err := taskflow.NewRedisStore(c, taskflow.WithPrefix(prefix))
		if err == nil {
			err = st.LoadScripts(ctx)
		}
		if err != nil {
			_ = c.Close()
			closeAll()
			return nil, nil, err
		}
		ws = append(ws, &fleetWorker{id: "worker-" + strconv.Itoa(i), c: c, hook: hook, m: taskflow.NewManager(st)})
	}
	return ws, closeAll, nil
}

// fleetRun is one claim-to-completion run's figures.
type fleetRun struct {
	secs, rate          float64
	scriptsPerFlow      float64 // script calls (EVALSHA, FCALL; server side) per flow
	tripsPerFlow        float64 // workers' round trips per flow
	cmdsPerFlow         float64 // workers' commands per flow
	emptyClaims         int     // Claim calls that returned nothing while flows remained
	finishedOnce, flows int
}

// fleet: claim-to-completion throughput of 1, 4 and 16 workers on
// distinct flows, then what an idle fleet blocked in Claim sends, on a
// private server.
func (r *runner) fleet(ctx context.Context) error {
	srv, err := r.startServer(ctx)
	if err != nil {
		return err
	}
	defer srv.kill()
	N := r.sz.fleetFlows
	runs := map[int][]fleetRun{}
	for round := 0; round < r.cfg.Rounds; round++ {
		for _, k := range r.sz.fleetWorkers {
			prefix := r.newPrefix("fleet")
			res, err := r.fleetOnce(ctx, srv, prefix, N, k)
			cctx, cancel := cleanupCtx(ctx)
			_, derr := deletePrefix(cctx, srv.client, prefix)
			cancel()
			if err != nil {
				return fmt.Errorf("%d workers: %w", k, err)
			}
			if derr != nil {
				return derr
			}
			runs[k] = append(runs[k], res)
		}
	}
	fmt.Fprintf(r.out, "%s running flows of one controller (CreateMirrored: each on the ready queue) per run, fresh flows each run;\n", n(N))
	fmt.Fprintln(r.out, "k workers, each with its own client, store and manager, loop Claim(lease 1 min, no wait) -> UpdateState(patch,")
	fmt.Fprintln(r.out, "WithLease) -> Finish(WithLease) until the queue is empty. Private Redis. scripts/flow = EVALSHA or FCALL calls per flow")
	fmt.Fprintln(r.out, "(INFO commandstats; 3 is one claim, one update, one finish); empty claims = Claim calls that got nothing.")
	var rows [][]string
	meds := map[int]float64{}
	for _, k := range r.sz.fleetWorkers {
		pick := func(g func(fleetRun) float64) float64 { return medianBy(runs[k], g) }
		rates := make([]float64, len(runs[k]))
		for i, x := range runs[k] {
			rates[i] = x.rate
		}
		lo, hi := minMax(rates)
		meds[k] = median(rates)
		rows = append(rows, []string{strconv.Itoa(k), n(N), f(pick(func(x fleetRun) float64 { return x.secs }), 2),
			f(meds[k], 0), f(lo, 0) + "-" + f(hi, 0),
			f(pick(func(x fleetRun) float64 { return x.scriptsPerFlow }), 2),
			f(pick(func(x fleetRun) float64 { return x.tripsPerFlow }), 2),
			f(pick(func(x fleetRun) float64 { return x.cmdsPerFlow }), 1),
			f(pick(func(x fleetRun) float64 { return float64(x.emptyClaims) }), 0)})
	}
	table(r.out, []string{"workers", "flows", "seconds", "flows/s (median)", "range", "scripts/flow", "round trips/flow", "commands/flow", "empty claims"}, rows)
	ks := r.sz.fleetWorkers
	var ratios []string
	for _, k := range ks[1:] {
		ratios = append(ratios, fmt.Sprintf("%d/%d workers %sx", k, ks[0], f(meds[k]/meds[ks[0]], 2)))
	}
	fmt.Fprintf(r.out, "throughput ratios: %s (this machine has %d CPUs, shared by Redis and the workers).\n", strings.Join(ratios, ", "), runtime.NumCPU())
	total := 0
	for _, k := range ks {
		total += len(runs[k])
	}
	fmt.Fprintf(r.out, "exactly once: in all %d runs every flow was claimed once, and reads back through the Manager as finished with\n", total)
	fmt.Fprintln(r.out, "exactly one claimed and one finished event and the worker's patch in its state: ok")

	fmt.Fprintln(r.out)
	return r.fleetIdle(ctx, srv)
}

// fleetOnce fills n running flows under prefix and drains them with k
// workers.
func (r *runner) fleetOnce(ctx context.Context, srv *server, prefix string, n, k int) (fleetRun, error) {
	var res fleetRun
	ws, closeAll, err := newFleetWorkers(ctx, srv, prefix, k)
	if err != nil {
		return res, err
	}
	defer closeAll()
	// Subscribe before the fill, so the timed part does not include
	// opening the subscription.
	if err := subscribeEmpty(ctx, ws, fleetController); err != nil {
		return res, err
	}
	st, err := taskflow.NewRedisStore(srv.client, taskflow.WithPrefix(prefix))
	if err != nil {
		return res, err
	}
	creator := taskflow.NewManager(st)
	ids := make([]uuid.UUID, n)
	if err := parallel(ctx, 8, n, func(ctx context.Context, i int) error {
		fl, err := creator.CreateMirrored(ctx, taskflow.CreateManagedInput{
			ControllerID: fleetController, Goal: "triage message " + strconv.Itoa(i),
			OwnerSessionKey: fmt.Sprintf("agent:kate-%d:session:s-%d", i%50, i%50), CurrentStep: "work",
			State: map[string]any{"message": i},
		})
		if err != nil {
			return err
		}
		ids[i] = fl.ID
		return nil
	}); err != nil {
		return res, err
	}
	// Let the announcements of the fill reach the workers' subscriptions
	// before the clock starts.
	time.Sleep(50 * time.Millisecond)
	for _, w := range ws {
		w.hook.reset()
	}
	before, err := commandStats(ctx, srv.client)
	if err != nil {
		return res, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu      sync.Mutex
		claimed = map[uuid.UUID]string{}
		dupes   []string
		empty   atomic.Int64
	)
	failed := &firstFailure{cancel: cancel}
	fail := failed.fail
	start := time.Now()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; runCtx.Err() == nil; seq++ {
				fl, lease, err := w.m.Claim(runCtx, fleetController, w.id, time.Minute, taskflow.WithClaimWait(0))
				if err != nil {
					fail(fmt.Errorf("%s: claim: %w", w.id, err))
					return
				}
				if fl == nil {
					left, err := readyCount(runCtx, srv.client, prefix, fleetController)
					if err != nil {
						fail(err)
						return
					}
					if left == 0 {
						return // nothing will become ready again
					}
					empty.Add(1)
					continue
				}
				mu.Lock()
				if prev, ok := claimed[fl.ID]; ok {
					dupes = append(dupes, fmt.Sprintf("%s by %s and %s", fl.ID, prev, w.id))
				}
				claimed[fl.ID] = w.id
				mu.Unlock()
				if _, err := w.m.UpdateState(runCtx, fl.ID, map[string]any{"worker": w.id, "seq": seq}, "report", taskflow.WithLease(lease)); err != nil {
					fail(fmt.Errorf("%s: update %s: %w", w.id, fl.ID, err))
					return
				}
				if _, err := w.m.Finish(runCtx, fl.ID, map[string]any{"done": true}, taskflow.WithLease(lease)); err != nil {
					fail(fmt.Errorf("%s: finish %s: %w", w.id, fl.ID, err))
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := failed.first(); err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	after, err := commandStats(ctx, srv.client)
	if err != nil {
		return res, err
	}
	if len(dupes) > 0 {
		return res, fmt.Errorf("%d flows claimed twice, e.g. %s", len(dupes), dupes[0])
	}
	if len(claimed) != n {
		return res, fmt.Errorf("%d workers claimed %d distinct flows, want %d", k, len(claimed), n)
	}
	// Every flow: finished, one claimed and one finished event, the
	// claiming worker's patch in the state.
	var bad atomic.Int64
	var badMsg atomic.Value
	if err := parallel(ctx, 8, n, func(ctx context.Context, i int) error {
		id := ids[i]
		msg := ""
		fl, err := creator.Get(ctx, id)
		if err != nil {
			return err
		}
		evs, err := creator.ListEvents(ctx, id, 1000)
		if err != nil {
			return err
		}
		kinds := map[taskflow.EventKind]int{}
		for _, e := range evs {
			kinds[e.Kind]++
		}
		var state map[string]any
		_ = json.Unmarshal(fl.State, &state)
		switch {
		case fl.Status != taskflow.StatusFinished:
			msg = "status " + string(fl.Status)
		case kinds[taskflow.EventFinished] != 1 || kinds[taskflow.EventClaimed] != 1:
			msg = fmt.Sprintf("%d finished and %d claimed events", kinds[taskflow.EventFinished], kinds[taskflow.EventClaimed])
		case state["worker"] != claimed[id] || state["done"] != true:
			msg = fmt.Sprintf("state %s, claimed by %s", fl.State, claimed[id])
		}
		if msg != "" {
			bad.Add(1)
			badMsg.CompareAndSwap(nil, fmt.Sprintf("flow %s: %s", id, msg))
		}
		return nil
	}); err != nil {
		return res, err
	}
	if b := bad.Load(); b > 0 {
		return res, fmt.Errorf("%d of %d flows not finished exactly once, e.g. %v", b, n, badMsg.Load())
	}
	var trips, cmds int64
	for _, w := range ws {
		trips += w.hook.trips.Load()
		cmds += w.hook.cmds.Load()
	}
	res = fleetRun{
		secs: elapsed.Seconds(), rate: float64(n) / elapsed.Seconds(),
		scriptsPerFlow: float64(scriptDelta(before, after).calls) / float64(n),
		tripsPerFlow:   float64(trips) / float64(n), cmdsPerFlow: float64(cmds) / float64(n),
		emptyClaims: int(empty.Load()), finishedOnce: n, flows: n,
	}
	return res, nil
}

// readyCount is the length of a controller's ready queue over every shard.
func readyCount(ctx context.Context, c redis.UniversalClient, prefix, controller string) (int64, error) {
	pipe := c.Pipeline()
	cmds := make([]*redis.IntCmd, defaultShards)
	for s := range cmds {
		cmds[s] = pipe.ZCard(ctx, prefix+":{"+strconv.Itoa(s)+"}:ready:"+controller)
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

// fleetIdle blocks idleWorkers workers in Claim (wait 1 min) on an
// empty queue, waits until their clients are quiet, and counts what they
// send over the idle window (client hooks), and what the server receives
// (INFO commandstats). Then it makes one flow ready and counts what the
// fleet sends to hand it out.
func (r *runner) fleetIdle(ctx context.Context, srv *server) error {
	prefix := r.newPrefix("fleetidle")
	defer func() {
		cctx, cancel := cleanupCtx(ctx)
		defer cancel()
		_, _ = deletePrefix(cctx, srv.client, prefix)
	}()
	k := r.sz.idleWorkers
	clientsBefore, _ := strconv.Atoi(infoField(ctx, srv.client, "clients", "connected_clients"))
	ws, closeAll, err := newFleetWorkers(ctx, srv, prefix, k)
	if err != nil {
		return err
	}
	claimCtx, cancelClaims := context.WithCancel(ctx)
	type claimResult struct {
		w   *fleetWorker
		fl  *taskflow.Flow
		l   *taskflow.Lease
		err error
	}
	results := make(chan claimResult, k)
	var wg sync.WaitGroup
	defer func() {
		cancelClaims()
		wg.Wait()
		closeAll()
	}()
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fl, l, err := w.m.Claim(claimCtx, fleetController, w.id, time.Minute, taskflow.WithClaimWait(time.Minute))
			results <- claimResult{w, fl, l, err}
		}()
	}
	total := func() int64 {
		var t int64
		for _, w := range ws {
			t += w.hook.cmds.Load()
		}
		return t
	}
	// Settled: every worker sent its first look, then ~500 ms of silence.
	settleStart := time.Now()
	last, quietSince := total(), time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(25 * time.Millisecond)
		started := 0
		for _, w := range ws {
			if w.hook.trips.Load() > 0 {
				started++
			}
		}
		if t := total(); t != last {
			last, quietSince = t, time.Now()
		} else if started == k && time.Since(quietSince) >= 500*time.Millisecond {
			break
		}
		if time.Since(settleStart) > 15*time.Second {
			return fmt.Errorf("idle fleet: %d of %d workers started and the clients did not go quiet within 15 s", started, k)
		}
		select {
		case res := <-results:
			return fmt.Errorf("idle fleet: a Claim returned before the wait ended: flow %v, err %v", res.fl, res.err)
		default:
		}
	}
	settle := time.Since(settleStart)
	setupCmds := total()
	var setupSummary []string
	for _, w := range ws[:1] {
		setupSummary = append(setupSummary, w.hook.summary())
	}
	clientsIdle, _ := strconv.Atoi(infoField(ctx, srv.client, "clients", "connected_clients"))
	for _, w := range ws {
		w.hook.reset()
	}
	srvBefore, err := commandStats(ctx, srv.client)
	if err != nil {
		return err
	}
	time.Sleep(r.sz.idleWindow)
	idleCmds := total()
	var idleNames []string
	for _, w := range ws {
		if s := w.hook.summary(); s != "" {
			idleNames = append(idleNames, w.id+": "+s)
		}
	}
	srvAfter, err := commandStats(ctx, srv.client)
	if err != nil {
		return err
	}
	select {
	case res := <-results:
		return fmt.Errorf("idle fleet: a Claim returned during the idle window: flow %v, err %v", res.fl, res.err)
	default:
	}
	// What the server received in the window, less our first INFO.
	var srvParts []string
	var srvTotal int64
	for name, st := range srvAfter {
		d := st.calls - srvBefore[name].calls
		if name == "info" {
			d--
		}
		if d > 0 {
			srvParts = append(srvParts, fmt.Sprintf("%s x%d", strings.ToUpper(name), d))
			srvTotal += d
		}
	}
	sort.Strings(srvParts)

	// One flow becomes ready: what does handing it out cost the fleet?
	for _, w := range ws {
		w.hook.reset()
	}
	st, err := taskflow.NewRedisStore(srv.client, taskflow.WithPrefix(prefix))
	if err != nil {
		return err
	}
	creator := taskflow.NewManager(st)
	one, err := creator.CreateMirrored(ctx, taskflow.CreateManagedInput{
		ControllerID: fleetController, Goal: "one message", OwnerSessionKey: "agent:kate-0:session:s-0",
	})
	if err != nil {
		return err
	}
	var got claimResult
	select {
	case got = <-results:
	case <-time.After(10 * time.Second):
		return errors.New("idle fleet: no worker claimed the ready flow within 10 s")
	}
	if got.err != nil || got.fl == nil || got.fl.ID != one.ID {
		return fmt.Errorf("idle fleet: claim of the ready flow: flow %v, err %v", got.fl, got.err)
	}
	if _, err := got.w.m.Finish(ctx, one.ID, nil, taskflow.WithLease(got.l)); err != nil {
		return err
	}
	// Let the other workers look and go back to sleep.
	last, quietSince = total(), time.Now()
	for time.Since(quietSince) < 500*time.Millisecond {
		time.Sleep(25 * time.Millisecond)
		if t := total(); t != last {
			last, quietSince = t, time.Now()
		}
	}
	handout := total()
	woke := 0
	for _, w := range ws {
		if w.hook.trips.Load() > 0 {
			woke++
		}
	}
	oneSummary := ""
	if len(ws) > 1 {
		oneSummary = ws[len(ws)-1].hook.summary()
		if ws[len(ws)-1] == got.w {
			oneSummary = ws[0].hook.summary()
		}
	}
	select {
	case res := <-results:
		return fmt.Errorf("idle fleet: a second Claim returned with one flow ready: flow %v, err %v", res.fl, res.err)
	default:
	}

	window := r.sz.idleWindow
	fmt.Fprintf(r.out, "Idle fleet: %d workers (own client, store, manager each) blocked in Claim(..., WithClaimWait(1 min)) on an\n", k)
	fmt.Fprintf(r.out, "empty queue. Settled after %s (setup: %s commands in all, per worker e.g. %s);\n",
		settle.Round(10*time.Millisecond), n(int(setupCmds)), strings.Join(setupSummary, ""))
	fmt.Fprintf(r.out, "server connections: %d before the workers existed, %d while they wait (%s per worker). Then %s of idleness:\n",
		clientsBefore, clientsIdle, f(float64(clientsIdle-clientsBefore)/float64(k), 1), window)
	table(r.out, []string{"idle fleet", "value", "target", "verdict"}, [][]string{
		{fmt.Sprintf("commands sent by the %d workers' clients in %s (go-redis hooks)", k, window), n(int(idleCmds)), "0", verdict(idleCmds == 0)},
		{fmt.Sprintf("commands the server received in %s (INFO commandstats)", window), n(int(srvTotal)), "", ""},
	})
	if len(idleNames) > 0 {
		fmt.Fprintf(r.out, "client commands while idle: %s\n", strings.Join(idleNames, "; "))
	}
	if srvTotal > 0 {
		fmt.Fprintf(r.out, "server side: %s (go-redis's PubSub health check pings a subscription connection after\n", strings.Join(srvParts, ", "))
		fmt.Fprintln(r.out, "3 s without a message; it is written on the subscription connection, which no client hook sees)")
	}
	fmt.Fprintf(r.out, "one flow made ready (CreateMirrored) while they wait: %d of %d workers woke, %s commands from the fleet to\n",
		woke, k, n(int(handout)))
	fmt.Fprintf(r.out, "hand it out (the worker that did not get it: %s); exactly one Claim returned it.\n", oneSummary)
	return nil
}

// subscribeEmpty has each worker Claim once from controller's empty
// queues (no wait), which opens its Manager's subscription; a flow
// claimed is an error.
func subscribeEmpty(ctx context.Context, ws []*fleetWorker, controller string) error {
	for _, w := range ws {
		fl, _, err := w.m.Claim(ctx, controller, w.id, time.Minute, taskflow.WithClaimWait(0))
		if err != nil {
			return err
		}
		if fl != nil {
			return fmt.Errorf("claimed flow %s from an empty queue", fl.ID)
		}
	}
	return nil
}
