package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/taskflow-dev/taskflow"
)

// Controllers of the children suite's flows.
const (
	childrenParentController = "bench/parent"
	childrenChildController  = "bench/child"
)

// childrenTarget is the server a children pass runs on: newClient opens
// a client ("a process"), stats reads INFO commandstats (nil where the
// server has none, as miniredis: no Redis time then).
type childrenTarget struct {
	newClient func() *redis.Client
	stats     func(ctx context.Context) (map[string]cmdStat, error)
}

// usecSince is the Redis time of every command but INFO since before
// (0 without stats).
func (t childrenTarget) usecSince(ctx context.Context, before map[string]cmdStat) (int64, error) {
	if t.stats == nil {
		return 0, nil
	}
	after, err := t.stats(ctx)
	if err != nil {
		return 0, err
	}
	var us int64
	for _, d := range statsDelta(before, after) {
		us += d.usec
	}
	return us, nil
}

func (t childrenTarget) snap(ctx context.Context) (map[string]cmdStat, error) {
	if t.stats == nil {
		return nil, nil
	}
	return t.stats(ctx)
}

// childrenProc is one client, store and manager, with its commands
// counted.
type childrenProc struct {
	c    *redis.Client
	hook *countHook
	m    *taskflow.Manager
}

func openChildrenProc(ctx context.Context, t childrenTarget, prefix string) (*childrenProc, error) {
	c := t.newClient()
	hook := newCountHook()
	c.AddHook(hook)
	st, err := taskflow.NewRedisStore(c, taskflow.WithPrefix(prefix))
	if err == nil {
		err = st.LoadScripts(ctx)
	}
	if err == nil {
		// Open a connection for single commands and one for pipelines,
		// so no connection's handshake is counted.
		_, err = c.Pipelined(ctx, func(p redis.Pipeliner) error { p.Ping(ctx); p.Ping(ctx); return nil })
	}
	if err == nil {
		err = c.Ping(ctx).Err()
	}
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return &childrenProc{c: c, hook: hook, m: taskflow.NewManager(st)}, nil
}

func (p *childrenProc) close() {
	_ = p.m.Close()
	_ = p.c.Close()
}

// childFlowInput is the input of child (or plain flow) i.
func childFlowInput(i int, state map[string]any) taskflow.CreateManagedInput {
	if state == nil {
		state = map[string]any{"item": i}
	}
	return taskflow.CreateManagedInput{
		ControllerID: childrenChildController, Goal: "summarize document " + strconv.Itoa(i),
		OwnerSessionKey: "agent:fanout:session:s-" + strconv.Itoa(i%10), CurrentStep: "work", State: state,
	}
}

// childPass is what making or ending n flows cost (a spawn pass, a
// join pass), either way: round trips and commands on the pass's client,
// Redis time, wall time.
type childPass struct {
	n           int
	trips, cmds int64
	usec        int64
	secs        float64
}

// measure runs work on p as one timed pass of n flows.
func measure(ctx context.Context, t childrenTarget, p *childrenProc, n int, work func() error) (childPass, error) {
	res := childPass{n: n}
	before, err := t.snap(ctx)
	if err != nil {
		return res, err
	}
	p.hook.reset()
	start := time.Now()
	if err := work(); err != nil {
		return res, err
	}
	res.secs = time.Since(start).Seconds()
	res.trips, res.cmds = p.hook.trips.Load(), p.hook.cmds.Load()
	res.usec, err = t.usecSince(ctx, before)
	return res, err
}

// openParent opens a process and creates the parent flow of a pass.
func openParent(ctx context.Context, t childrenTarget, prefix string) (*childrenProc, *taskflow.Flow, error) {
	p, err := openChildrenProc(ctx, t, prefix)
	if err != nil {
		return nil, nil, err
	}
	parent, err := p.m.CreateMirrored(ctx, childFlowInput(-1, nil))
	if err != nil {
		p.close()
		return nil, nil, err
	}
	return p, parent, nil
}

// spawnChildren starts n children of one parent with one StartChildren
// call (byHand: n CreateMirrored calls one after another, the flows a
// user would make without children), counting the calls' round trips
// and Redis time.
func spawnChildren(ctx context.Context, t childrenTarget, prefix string, n int, byHand bool) (childPass, error) {
	res := childPass{n: n}
	p, parent, err := openParent(ctx, t, prefix)
	if err != nil {
		return res, err
	}
	defer p.close()
	ins := make([]taskflow.ChildInput, n)
	for i := range ins {
		ins[i] = taskflow.ChildInput{Key: "k" + strconv.Itoa(i), Flow: childFlowInput(i, nil)}
	}
	res, err = measure(ctx, t, p, n, func() error {
		if byHand {
			for _, in := range ins {
				if _, err := p.m.CreateMirrored(ctx, in.Flow); err != nil {
					return err
				}
			}
			return nil
		}
		kids, err := p.m.StartChildren(ctx, parent.ID, ins)
		if err == nil && len(kids) != n {
			err = fmt.Errorf("StartChildren returned %d children, want %d", len(kids), n)
		}
		return err
	})
	if err != nil {
		return res, err
	}
	if !byHand {
		got, err := p.m.Get(ctx, parent.ID)
		if err != nil {
			return res, err
		}
		if got.Children != n {
			return res, fmt.Errorf("the parent counts %d children, want %d", got.Children, n)
		}
	}
	return res, nil
}

// joinChildren starts n children under a parent that waits on all of
// them (plain: n flows with no parent), then finishes them from
// workers goroutines and counts the finishes' round trips and Redis
// time: for children, each finish delivers its outcome to the parent,
// and the last resumes it with the summary of all n.
func joinChildren(ctx context.Context, t childrenTarget, prefix string, n, workers int, plain bool) (childPass, error) {
	res := childPass{n: n}
	p, parent, err := openParent(ctx, t, prefix)
	if err != nil {
		return res, err
	}
	defer p.close()
	ids := make([]uuid.UUID, n)
	if plain {
		if err := parallel(ctx, workers, n, func(ctx context.Context, i int) error {
			f, err := p.m.CreateMirrored(ctx, childFlowInput(i, nil))
			if err == nil {
				ids[i] = f.ID
			}
			return err
		}); err != nil {
			return res, err
		}
	} else {
		ins := make([]taskflow.ChildInput, n)
		for i := range ins {
			ins[i] = taskflow.ChildInput{Key: "k" + strconv.Itoa(i), Flow: childFlowInput(i, nil)}
		}
		kids, err := p.m.StartChildren(ctx, parent.ID, ins)
		if err != nil {
			return res, err
		}
		for i, k := range kids {
			ids[i] = k.ID
		}
		if _, err := p.m.SetWaiting(ctx, parent.ID, taskflow.WaitChildren(taskflow.Join{})); err != nil {
			return res, err
		}
	}
	res, err = measure(ctx, t, p, n, func() error {
		return parallel(ctx, workers, n, func(ctx context.Context, i int) error {
			_, err := p.m.Finish(ctx, ids[i], map[string]any{"summary": "document " + strconv.Itoa(i) + " is fine"})
			return err
		})
	})
	if err != nil {
		return res, err
	}
	if !plain {
		got, err := p.m.Get(ctx, parent.ID)
		if err != nil {
			return res, err
		}
		var st struct {
			Children struct{ Total, Finished int } `json:"children"`
		}
		_ = json.Unmarshal(got.State, &st)
		if got.Status != taskflow.StatusRunning || st.Children.Total != n || st.Children.Finished != n {
			return res, fmt.Errorf("the parent is %s with %d of %d children finished, want running with %d", got.Status, st.Children.Finished, st.Children.Total, n)
		}
	}
	return res, nil
}

// fanOutSpec sizes one fan-out pass.
type fanOutSpec struct {
	parents, kids int
	procs         int // worker processes: a client, store and manager each
	parentLoops   int // loops per process claiming parents
	childLoops    int // loops per process claiming children
}

// fanOutPass is one fan-out pass: every flow made and finished, parents
// and children, in secs.
type fanOutPass struct {
	flows int
	secs  float64
	usec  int64
	trips int64
}

func (p fanOutPass) flowsPerSec() float64 { return float64(p.flows) / p.secs }

// fanOut runs the LangGraph-style fan-out end to end: parents are
// created running on their controller's queue; a parent loop claims one,
// starts its children and waits; child loops claim children and finish
// them; the parent, resumed, is claimed again and finished with its
// children's results. With children (byHand false) a parent starts its
// children with StartChildren and waits on WaitChildren; by hand, it
// creates them with CreateMirrored one by one (each carrying its parent's
// id) and waits on an external event; a child's worker, after its
// Finish, merges the child's result into the parent's state with
// UpdateState (an atomic merge that returns the merged state), and the
// one whose merge made the count reach the number of children sends the
// event with ResumeByCorrelation (kept, and taken by SetWaiting, when
// the parent has not started waiting yet).
func fanOut(ctx context.Context, t childrenTarget, prefix string, spec fanOutSpec, byHand bool) (fanOutPass, error) {
	res := fanOutPass{flows: spec.parents * (1 + spec.kids)}
	procs := make([]*childrenProc, spec.procs)
	defer func() {
		for _, p := range procs {
			if p != nil {
				p.close()
			}
		}
	}()
	for i := range procs {
		p, err := openChildrenProc(ctx, t, prefix)
		if err != nil {
			return res, err
		}
		// Subscribe before the clock starts: a Claim on empty queues.
		for _, ctl := range []string{childrenParentController, childrenChildController} {
			if f, _, err := p.m.Claim(ctx, ctl, "warm-up", time.Minute, taskflow.WithClaimWait(0)); err != nil || f != nil {
				p.close()
				return res, fmt.Errorf("warm-up claim: %v %v", f, err)
			}
		}
		procs[i] = p
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		finished atomic.Int64
		wg       sync.WaitGroup
	)
	failed := &firstFailure{cancel: cancel}
	fail := failed.fail
	topic := "fanout"
	// claim takes the next flow of ctl for worker id: ok false ends the
	// loop (the run is over, or failed).
	claim := func(p *childrenProc, ctl, id, what string) (f *taskflow.Flow, l *taskflow.Lease, ok bool) {
		f, l, err := p.m.Claim(runCtx, ctl, id, time.Minute, taskflow.WithClaimWait(200*time.Millisecond))
		if err != nil {
			if runCtx.Err() == nil {
				fail(fmt.Errorf("%s: claim a %s: %w", id, what, err))
			}
			return nil, nil, false
		}
		return f, l, true
	}
	parentLoop := func(p *childrenProc, id string) {
		defer wg.Done()
		for runCtx.Err() == nil {
			f, l, ok := claim(p, childrenParentController, id, "parent")
			if !ok {
				return
			}
			if f == nil {
				continue
			}
			var st map[string]json.RawMessage
			if err := json.Unmarshal(f.State, &st); err != nil {
				fail(err)
				return
			}
			_, joined := st["children"]
			_, evented := st["resume_event"]
			if joined || evented {
				// Resumed with every child's result: done.
				if _, err := p.m.Finish(runCtx, f.ID, map[string]any{"done": true}, taskflow.WithLease(l)); err != nil {
					fail(fmt.Errorf("%s: finish parent %s: %w", id, f.ID, err))
					return
				}
				if finished.Add(1) == int64(spec.parents) {
					cancel()
				}
				continue
			}
			var err error
			if byHand {
				for k := 0; k < spec.kids; k++ {
					if _, err := p.m.CreateMirrored(runCtx, childFlowInput(k, map[string]any{"parent": f.ID.String(), "key": "k" + strconv.Itoa(k)})); err != nil {
						fail(fmt.Errorf("%s: create child: %w", id, err))
						return
					}
				}
				_, err = p.m.SetWaiting(runCtx, f.ID, taskflow.WaitExternalEvent(topic, f.ID.String()), taskflow.WithLease(l))
			} else {
				ins := make([]taskflow.ChildInput, spec.kids)
				for k := range ins {
					ins[k] = taskflow.ChildInput{Key: "k" + strconv.Itoa(k), Flow: childFlowInput(k, nil)}
				}
				if _, err = p.m.StartChildren(runCtx, f.ID, ins); err == nil {
					_, err = p.m.SetWaiting(runCtx, f.ID, taskflow.WaitChildren(taskflow.Join{}), taskflow.WithLease(l))
				}
			}
			if err != nil {
				fail(fmt.Errorf("%s: spawn and wait %s: %w", id, f.ID, err))
				return
			}
		}
	}
	childLoop := func(p *childrenProc, id string) {
		defer wg.Done()
		for runCtx.Err() == nil {
			f, l, ok := claim(p, childrenChildController, id, "child")
			if !ok {
				return
			}
			if f == nil {
				continue
			}
			result := map[string]any{"summary": "fine"}
			if _, err := p.m.Finish(runCtx, f.ID, result, taskflow.WithLease(l)); err != nil {
				fail(fmt.Errorf("%s: finish child %s: %w", id, f.ID, err))
				return
			}
			if !byHand {
				continue
			}
			var st struct{ Parent, Key string }
			if err := json.Unmarshal(f.State, &st); err != nil {
				fail(err)
				return
			}
			parent, err := uuid.Parse(st.Parent)
			if err != nil {
				fail(fmt.Errorf("child %s has no parent in its state: %w", f.ID, err))
				return
			}
			pf, err := p.m.UpdateState(runCtx, parent, map[string]any{"result_" + st.Key: result}, "")
			if err != nil {
				fail(fmt.Errorf("%s: report to %s: %w", id, parent, err))
				return
			}
			var ps map[string]json.RawMessage
			if err := json.Unmarshal(pf.State, &ps); err != nil {
				fail(err)
				return
			}
			got := 0
			for k := range ps {
				if strings.HasPrefix(k, "result_") {
					got++
				}
			}
			if got == spec.kids {
				if _, err := p.m.ResumeByCorrelation(runCtx, topic, parent.String(), map[string]int{"results": got}); err != nil {
					fail(fmt.Errorf("%s: resume %s: %w", id, parent, err))
					return
				}
			}
		}
	}
	creator := procs[0]
	before, err := t.snap(ctx)
	if err != nil {
		return res, err
	}
	for _, p := range procs {
		p.hook.reset()
	}
	start := time.Now()
	for i, p := range procs {
		for l := 0; l < spec.parentLoops; l++ {
			wg.Add(1)
			go parentLoop(p, fmt.Sprintf("p%d/parents-%d", i, l))
		}
		for l := 0; l < spec.childLoops; l++ {
			wg.Add(1)
			go childLoop(p, fmt.Sprintf("p%d/children-%d", i, l))
		}
	}
	if err := parallel(runCtx, 4, spec.parents, func(ctx context.Context, i int) error {
		_, err := creator.m.CreateMirrored(ctx, taskflow.CreateManagedInput{
			ControllerID: childrenParentController, Goal: "research question " + strconv.Itoa(i),
			OwnerSessionKey: "agent:fanout:session:s-" + strconv.Itoa(i%10), CurrentStep: "plan",
			State: map[string]any{"question": i},
		})
		return err
	}); err != nil && !errors.Is(err, context.Canceled) {
		fail(fmt.Errorf("create parents: %w", err))
	}
	wg.Wait()
	res.secs = time.Since(start).Seconds()
	if err := failed.first(); err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	for _, p := range procs {
		res.trips += p.hook.trips.Load()
	}
	if res.usec, err = t.usecSince(ctx, before); err != nil {
		return res, err
	}
	st, err := creator.m.Stats(ctx)
	if err != nil {
		return res, err
	}
	if got := st.Flows[taskflow.StatusFinished]; got != int64(res.flows) || st.Total != int64(res.flows) {
		return res, fmt.Errorf("%d flows, %d finished, want %d finished", st.Total, got, res.flows)
	}
	return res, nil
}

// children: flows of flows (issue 23) against the same work by hand, on
// a private server: spawning, joining, and a fan-out end to end.
func (r *runner) children(ctx context.Context) error {
	srv, err := r.startServer(ctx)
	if err != nil {
		return err
	}
	defer srv.kill()
	t := childrenTarget{newClient: srv.newClient, stats: func(ctx context.Context) (map[string]cmdStat, error) {
		return commandStats(ctx, srv.client)
	}}
	return r.childrenOn(ctx, t, func(ctx context.Context, prefix string) error {
		_, err := deletePrefix(ctx, srv.client, prefix)
		return err
	})
}

// childrenOn runs the suite's passes on t, deleting each pass's keys
// with cleanup, and prints the tables.
func (r *runner) childrenOn(ctx context.Context, t childrenTarget, cleanup func(ctx context.Context, prefix string) error) error {
	sz := r.sz
	pass := func(run func(prefix string) error) error {
		prefix := r.newPrefix("children")
		err := run(prefix)
		cctx, cancel := cleanupCtx(ctx)
		defer cancel()
		if cerr := cleanup(cctx, prefix); cerr != nil && err == nil {
			err = cerr
		}
		return err
	}
	var spawns, spawnsByHand []childPass
	var joins, joinsPlain []childPass
	var fans, fansByHand []fanOutPass
	spec := fanOutSpec{parents: sz.fanParents, kids: sz.fanKids, procs: 2, parentLoops: 2, childLoops: 8}
	for round := 0; round < r.cfg.Rounds; round++ {
		for _, byHand := range []bool{round%2 == 1, round%2 == 0} { // alternate who goes first
			if err := pass(func(prefix string) error {
				res, err := spawnChildren(ctx, t, prefix, sz.spawnChildren, byHand)
				if byHand {
					spawnsByHand = append(spawnsByHand, res)
				} else {
					spawns = append(spawns, res)
				}
				return err
			}); err != nil {
				return fmt.Errorf("spawn (by hand %v): %w", byHand, err)
			}
			if err := pass(func(prefix string) error {
				res, err := joinChildren(ctx, t, prefix, sz.spawnChildren, 8, byHand)
				if byHand {
					joinsPlain = append(joinsPlain, res)
				} else {
					joins = append(joins, res)
				}
				return err
			}); err != nil {
				return fmt.Errorf("join (plain %v): %w", byHand, err)
			}
			if err := pass(func(prefix string) error {
				res, err := fanOut(ctx, t, prefix, spec, byHand)
				if byHand {
					fansByHand = append(fansByHand, res)
				} else {
					fans = append(fans, res)
				}
				return err
			}); err != nil {
				return fmt.Errorf("fan-out (by hand %v): %w", byHand, err)
			}
		}
	}
	r.childrenReport(spec, t.stats != nil, spawns, spawnsByHand, joins, joinsPlain, fans, fansByHand)
	return nil
}

// childrenReport prints the suite's table.
func (r *runner) childrenReport(spec fanOutSpec, timed bool, spawns, spawnsByHand []childPass, joins, joinsPlain []childPass, fans, fansByHand []fanOutPass) {
	w := r.out
	N := r.sz.spawnChildren
	fmt.Fprintf(w, "One private Redis; each round runs every pass both ways, which goes first alternating by round; medians over rounds.\n")
	fmt.Fprintf(w, "spawn: one StartChildren of %s children under one parent, vs %s CreateMirrored calls one after another.\n", n(N), n(N))
	fmt.Fprintf(w, "join: %s children of a parent waiting on all of them (WaitChildren) finished by 8 goroutines (each Finish delivers\n", n(N))
	fmt.Fprintln(w, "the child's outcome to the parent, the last one resumes it with the summary of all), vs as many flows with no parent.")
	fmt.Fprintf(w, "fan-out: %d parents x %d children end to end, %d processes (a client, store and manager each) with %d parent loops and\n",
		spec.parents, spec.kids, spec.procs, spec.parentLoops)
	fmt.Fprintf(w, "%d child loops each (Claim, lease 1 min, wait 200 ms); parents created by 4 goroutines while the loops run. A parent loop\n", spec.childLoops)
	fmt.Fprintln(w, "claims a parent, starts its children and waits; child loops claim and finish children; the resumed parent is claimed")
	fmt.Fprintln(w, "again and finished. Children: StartChildren, then SetWaiting(WaitChildren(all)). By hand: the parent creates its")
	fmt.Fprintln(w, "children with CreateMirrored one by one and waits on an external event; a child's worker, after Finish, merges the")
	fmt.Fprintln(w, "result into the parent's state with UpdateState, and the one whose merge completes the count calls ResumeByCorrelation.")
	fmt.Fprintln(w, "Round trips: go-redis hooks on the callers' clients (a pipeline is one). Redis time: INFO commandstats usec of every")
	fmt.Fprintln(w, "command but INFO over the pass's window (a script's usec includes the commands it calls, counted again by name).")
	var rows [][]string
	row := func(label string, a, b float64, d int) {
		ratio := ""
		if b != 0 {
			d := 2
			if a/b < 0.1 {
				d = 3 // 4 round trips against 1,000
			}
			ratio = f(a/b, d) + "x"
		}
		rows = append(rows, []string{label, f(a, d), f(b, d), ratio})
	}
	per := func(x, nn int64) float64 { return float64(x) / float64(nn) }
	row(fmt.Sprintf("spawn %s: round trips in all", n(N)),
		medianBy(spawns, func(p childPass) float64 { return float64(p.trips) }),
		medianBy(spawnsByHand, func(p childPass) float64 { return float64(p.trips) }), 0)
	row("spawn: commands per child",
		medianBy(spawns, func(p childPass) float64 { return per(p.cmds, int64(p.n)) }),
		medianBy(spawnsByHand, func(p childPass) float64 { return per(p.cmds, int64(p.n)) }), 2)
	if timed {
		row("spawn: Redis time per child (us)",
			medianBy(spawns, func(p childPass) float64 { return per(p.usec, int64(p.n)) }),
			medianBy(spawnsByHand, func(p childPass) float64 { return per(p.usec, int64(p.n)) }), 1)
	}
	row("spawn: wall time per child (us)",
		medianBy(spawns, func(p childPass) float64 { return 1e6 * p.secs / float64(p.n) }),
		medianBy(spawnsByHand, func(p childPass) float64 { return 1e6 * p.secs / float64(p.n) }), 1)
	row("join: round trips per child's Finish",
		medianBy(joins, func(p childPass) float64 { return per(p.trips, int64(p.n)) }),
		medianBy(joinsPlain, func(p childPass) float64 { return per(p.trips, int64(p.n)) }), 2)
	if timed {
		row("join: Redis time per child result (us)",
			medianBy(joins, func(p childPass) float64 { return per(p.usec, int64(p.n)) }),
			medianBy(joinsPlain, func(p childPass) float64 { return per(p.usec, int64(p.n)) }), 1)
	}
	row(fmt.Sprintf("fan-out %dx%d: flows/s (parents and children)", spec.parents, spec.kids),
		medianBy(fans, fanOutPass.flowsPerSec), medianBy(fansByHand, fanOutPass.flowsPerSec), 0)
	row("fan-out: round trips per parent",
		medianBy(fans, func(p fanOutPass) float64 { return per(p.trips, int64(spec.parents)) }),
		medianBy(fansByHand, func(p fanOutPass) float64 { return per(p.trips, int64(spec.parents)) }), 1)
	if timed {
		row("fan-out: Redis time per parent with its children (us)",
			medianBy(fans, func(p fanOutPass) float64 { return per(p.usec, int64(spec.parents)) }),
			medianBy(fansByHand, func(p fanOutPass) float64 { return per(p.usec, int64(spec.parents)) }), 0)
	}
	table(w, []string{"figure", "children", "by hand", "ratio children/by hand"}, rows)
	fmt.Fprintf(w, "Every pass checked: the parent counts its %s children; the joined parent resumed running with all %s finished;\n", n(N), n(N))
	fmt.Fprintln(w, "every fan-out flow, parents and children, ended finished.")
}
