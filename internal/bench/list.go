package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/taskflow-dev/taskflow"
)

// listKind is one listing whose first page is timed.
type listKind struct {
	name    string
	limit   int  // page size
	byOwner bool // lists the owner's index
	call    func(ctx context.Context, m *taskflow.Manager, owner string) (*taskflow.FlowPage, error)
	// check validates a first page against the space it was read from.
	check func(p *taskflow.FlowPage, owner string) error
	// expect is how many flows the first page holds in a space of size
	// flows (nil: a full page, or the owner's flows when fewer).
	expect func(size int) int
	// target bounds the ratio of medians, large space over small (0: 2).
	target float64
}

// The list spaces' controllers and search attributes: flow i is of
// controller listController(i % listControllers) and has the attribute
// customer=listCustomer(i % listCustomers), so the listed controller
// holds a quarter of the flows and the listed customer a tenth.
const (
	listControllers = 4
	listCustomers   = 10
)

func listController(i int) string { return fmt.Sprintf("kate/ctl-%d", i%listControllers) }
func listCustomer(i int) string   { return fmt.Sprintf("cust-%d", i%listCustomers) }

func listAttrs(i int) map[string]string { return map[string]string{"customer": listCustomer(i)} }

// findKind is a timed Find of filter whose first page holds want(size)
// flows, each checked against the filter.
func findKind(name string, filter taskflow.Filter, want func(size int) int, target float64) listKind {
	return listKind{
		name: name, limit: listPageLimit, expect: want, target: target,
		call: func(ctx context.Context, m *taskflow.Manager, _ string) (*taskflow.FlowPage, error) {
			return m.Find(ctx, filter, taskflow.WithLimit(listPageLimit))
		},
		check: func(p *taskflow.FlowPage, _ string) error {
			for _, fl := range p.Flows {
				if (filter.Controller != "" && fl.ControllerID != filter.Controller) ||
					(filter.Status != "" && fl.Status != filter.Status) ||
					(filter.Attribute != "" && "customer="+fl.Attributes["customer"] != filter.Attribute) {
					return fmt.Errorf("%s returned flow %s (%s, %s, %v)", name, fl.ID, fl.ControllerID, fl.Status, fl.Attributes)
				}
			}
			return nil
		},
	}
}

// listPageLimit is the page size of every timed listing.
const listPageLimit = 100

func listKinds() []listKind {
	return []listKind{
		{
			name: "ListByStatusPage(waiting)", limit: listPageLimit,
			call: func(ctx context.Context, m *taskflow.Manager, _ string) (*taskflow.FlowPage, error) {
				return m.ListByStatusPage(ctx, taskflow.StatusWaiting, taskflow.WithLimit(listPageLimit))
			},
			check: func(p *taskflow.FlowPage, _ string) error {
				for _, fl := range p.Flows {
					if fl.Status != taskflow.StatusWaiting {
						return fmt.Errorf("status listing returned flow %s in status %s", fl.ID, fl.Status)
					}
				}
				return nil
			},
		},
		{
			name: "ListByOwnerPage(owner)", limit: listPageLimit, byOwner: true,
			call: func(ctx context.Context, m *taskflow.Manager, owner string) (*taskflow.FlowPage, error) {
				return m.ListByOwnerPage(ctx, owner, taskflow.WithLimit(listPageLimit))
			},
			check: checkOwner,
		},
		{
			// The same page size in both spaces: the owner holds at
			// least 10 flows in each.
			name: "ListByOwnerPage(owner), limit 10", limit: 10, byOwner: true,
			call: func(ctx context.Context, m *taskflow.Manager, owner string) (*taskflow.FlowPage, error) {
				return m.ListByOwnerPage(ctx, owner, taskflow.WithLimit(10))
			},
			check: checkOwner,
		},
		{
			name: "ListRecent(nil)", limit: listPageLimit,
			call: func(ctx context.Context, m *taskflow.Manager, _ string) (*taskflow.FlowPage, error) {
				return m.ListRecent(ctx, nil, taskflow.WithLimit(listPageLimit))
			},
			check: func(*taskflow.FlowPage, string) error { return nil },
		},
		findKind("Find(controller)", taskflow.Filter{Controller: listController(0)},
			func(size int) int { return min(listPageLimit, size/listControllers) }, 1.5),
		findKind("Find(attribute customer)", taskflow.Filter{Attribute: "customer=" + listCustomer(0)},
			func(size int) int { return min(listPageLimit, size/listCustomers) }, 1.5),
		findKind("Find(controller, status waiting)", taskflow.Filter{Controller: listController(0), Status: taskflow.StatusWaiting},
			func(size int) int { return min(listPageLimit, size/listControllers) }, 1.5),
		// No flow is running: the worst case, a page that scans its
		// whole budget and finds nothing (at 1,000 flows the indexes end
		// before the budget does). Not held to the 1.5 target.
		findKind("Find(controller, status running): no match", taskflow.Filter{Controller: listController(0), Status: taskflow.StatusRunning},
			func(int) int { return 0 }, 0),
	}
}

func checkOwner(p *taskflow.FlowPage, owner string) error {
	for _, fl := range p.Flows {
		if fl.OwnerSessionKey != owner {
			return fmt.Errorf("owner listing returned flow %s of owner %q", fl.ID, fl.OwnerSessionKey)
		}
	}
	return nil
}

// listCell is one listing at one space size.
type listCell struct {
	med, lo, hi float64 // microseconds per call: median of round medians, range
	trips, cmds float64 // per call
	redisUs     float64 // Redis time per call, microseconds (listRedisUsec)
	flows       int     // flows on the first page
	more        bool    // the page had a next cursor
}

// listSpace is one flow space's figures.
type listSpace struct {
	size, ownerFlows int
	fill             time.Duration
	cells            []listCell
}

// list: the first page of the three listings on a small and a large flow
// space (direct fill, like tick), then walks of every page of the status
// listing while flows leave waiting between pages, on a private server.
func (r *runner) list(ctx context.Context) error {
	srv, err := r.startServer(ctx)
	if err != nil {
		return err
	}
	defer srv.kill()
	if err := checkFillFidelity(ctx, srv.client, r.newPrefix("fid")); err != nil {
		return err
	}
	lc := srv.newClient()
	defer lc.Close()
	hook := newCountHook()
	lc.AddHook(hook)

	kinds := listKinds()
	owner := fillOwner(0, r.sz.listOwners)
	var spaces []listSpace
	var walks []listWalk
	for _, size := range []int{r.sz.listSmall, r.sz.listLarge} {
		prefix := r.newPrefix("list")
		fw := waitFill{c: srv.client, prefix: prefix, shards: defaultShards, owners: r.sz.listOwners, workers: 4, batch: 500,
			controller: listController, attrs: listAttrs}
		now := time.Now()
		t0 := time.Now()
		ids, err := fw.fill(ctx, 0, size, now.Add(-time.Minute), now.Add(-time.Minute), func(i int) time.Time {
			return now.Add(24*time.Hour + time.Duration(i)*time.Millisecond)
		})
		if err != nil {
			return err
		}
		sp := listSpace{size: size, fill: time.Since(t0)}
		if sp.ownerFlows, err = ownerCount(ctx, srv.client, prefix, owner); err != nil {
			return err
		}
		st, err := taskflow.NewRedisStore(lc, taskflow.WithPrefix(prefix))
		if err != nil {
			return err
		}
		if err := st.LoadScripts(ctx); err != nil {
			return err
		}
		m := taskflow.NewManager(st)
		if sp.cells, err = r.timeLists(ctx, m, hook, srv.client, kinds, owner, size, sp.ownerFlows); err != nil {
			return err
		}
		spaces = append(spaces, sp)
		if size == r.sz.listSmall {
			// The walk moves flows out of waiting: after the timing.
			w, err := walkWhileMoving(ctx, m, ids, r.sz.listWalkLimit, "direct fill, one timestamp (all ties)")
			if err != nil {
				return err
			}
			walks = append(walks, w)
			// Free the small space before the large one is written.
			cctx, cancel := cleanupCtx(ctx)
			_, err = deletePrefix(cctx, srv.client, prefix)
			cancel()
			if err != nil {
				return err
			}
		}
	}

	// A second walk on a space written by the Manager: real, mostly
	// distinct timestamps in the status index.
	{
		prefix := r.newPrefix("listwalk")
		st, err := taskflow.NewRedisStore(lc, taskflow.WithPrefix(prefix))
		if err != nil {
			return err
		}
		m := taskflow.NewManager(st)
		ids, err := createWaiting(ctx, m, r.sz.listSmall, 8)
		if err != nil {
			return err
		}
		w, err := walkWhileMoving(ctx, m, ids, r.sz.listWalkLimit, "created with the Manager (real timestamps)")
		if err != nil {
			return err
		}
		walks = append(walks, w)
	}

	small, large := spaces[0], spaces[1]
	fmt.Fprintf(r.out, "First page (limit %d unless shown) of each listing on a flow space of %s and of %s waiting flows (direct fill,\n",
		listPageLimit, n(small.size), n(large.size))
	fmt.Fprintf(r.out, "shape checked against the Manager; %d shards; %d owners round-robin, so the listed owner %q holds 1/%d of the flows).\n",
		defaultShards, r.sz.listOwners, owner, r.sz.listOwners)
	fmt.Fprintf(r.out, "Flows are spread round-robin over %d controllers and %d values of the search attribute customer; Find lists\n", listControllers, listCustomers)
	fmt.Fprintf(r.out, "the first of each (a 1/%d and a 1/%d share of the flows).\n", listControllers, listCustomers)
	fmt.Fprintf(r.out, "%d calls per round, median per round, then median of %d rounds; one client, private Redis.\n", r.sz.listCalls, r.cfg.Rounds)
	var rows [][]string
	for _, sp := range spaces {
		for i, k := range kinds {
			c := sp.cells[i]
			inIndex := sp.size
			if k.byOwner {
				inIndex = sp.ownerFlows
			}
			rows = append(rows, []string{k.name, n(sp.size), n(inIndex), n(c.flows), f(c.med, 0), f(c.lo, 0) + "-" + f(c.hi, 0),
				f(c.redisUs, 0), f(c.trips, 1), f(c.cmds, 1), f(c.med/float64(max(c.flows, 1)), 1)})
		}
	}
	table(r.out, []string{"listing", "flows in space", "flows in index", "page flows", "us/call (median)", "round medians",
		"Redis us/call (mean)", "round trips/call", "commands/call", "us per listed flow"}, rows)
	fmt.Fprintln(r.out, "Redis us/call: INFO commandstats usec over the timed calls, each command once (a script's own commands are in its time).")
	fmt.Fprintf(r.out, "fill time: %s for %s flows, %s for %s.\n", small.fill.Round(10*time.Millisecond), n(small.size),
		large.fill.Round(10*time.Millisecond), n(large.size))
	fmt.Fprintln(r.out)
	var ratioRows [][]string
	for i, k := range kinds {
		ratio := large.cells[i].med / small.cells[i].med
		label := fmt.Sprintf("%s at %s / at %s", k.name, n(large.size), n(small.size))
		if k.byOwner {
			label += fmt.Sprintf(" (page %d / %d flows)", large.cells[i].flows, small.cells[i].flows)
		}
		target, bound := "<= 2", 2.0
		switch {
		case k.target > 0:
			target, bound = "<= "+f(k.target, 1), k.target
		case k.expect != nil:
			target, bound = "(none)", 0
		}
		v := ""
		if bound > 0 {
			v = verdict(ratio <= bound)
		}
		redisRatio := large.cells[i].redisUs / max(small.cells[i].redisUs, 1)
		ratioRows = append(ratioRows, []string{label, f(ratio, 2), target, v, f(redisRatio, 2)})
	}
	table(r.out, []string{"ratio of medians", "value", "target", "verdict", "Redis time ratio"}, ratioRows)
	fmt.Fprintf(r.out, "(the owner holds %s flows in the small space and %s in the large one. At limit %d its first page has %d and %d\n"+
		" flows, so that ratio includes reading %dx as many flows (compare us per listed flow); at limit 10 both pages are full.)\n",
		n(small.ownerFlows), n(large.ownerFlows), listPageLimit, small.cells[1].flows, large.cells[1].flows,
		large.cells[1].flows/max(small.cells[1].flows, 1))

	fmt.Fprintln(r.out)
	fmt.Fprintf(r.out, "Walk of every page of ListByStatusPage(waiting) (limit %d) over %s waiting flows; between pages the walker\n",
		r.sz.listWalkLimit, n(r.sz.listSmall))
	fmt.Fprintln(r.out, "resumes the first 2 flows of the next page (peeked with the cursor) and 3 random not-yet-listed flows, and")
	fmt.Fprintln(r.out, "cancels the flow the cursor points at and 3 random already-listed ones (Manager calls, real scripts).")
	var wrows [][]string
	for _, w := range walks {
		wrows = append(wrows, []string{w.label, n(w.pages), n(w.listed), n(w.resumedUnlisted), n(w.cancelledListed),
			n(w.dups), n(w.skipped), n(w.ghosts), n(w.wrongStatus + w.foreign), okFailed(w.ok())})
	}
	table(r.out, []string{"space", "pages", "listed", "resumed before listed", "cancelled after listed",
		"seen twice", "stayed waiting, skipped", "resumed, still listed", "listed not waiting or foreign", "verdict"}, wrows)
	return nil
}

func okFailed(ok bool) string {
	if ok {
		return "ok"
	}
	return "FAILED"
}

// timeLists times the first page of each listing: a warm-up, then rounds
// of calls, the kinds interleaved round by round.
func (r *runner) timeLists(ctx context.Context, m *taskflow.Manager, hook *countHook, admin redis.UniversalClient, kinds []listKind, owner string, size, ownerFlows int) ([]listCell, error) {
	cells := make([]listCell, len(kinds))
	roundMeds := make([][]float64, len(kinds))
	trips := make([]int64, len(kinds))
	cmds := make([]int64, len(kinds))
	calls := make([]int, len(kinds))
	redisUs := make([]int64, len(kinds))
	for i, k := range kinds {
		for w := 0; w < 5; w++ {
			p, err := k.call(ctx, m, owner)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k.name, err)
			}
			want := min(k.limit, size)
			if k.byOwner {
				want = min(k.limit, ownerFlows)
			}
			if k.expect != nil {
				want = k.expect(size)
			}
			if len(p.Flows) != want {
				return nil, fmt.Errorf("%s on %d flows: first page has %d flows, want %d", k.name, size, len(p.Flows), want)
			}
			if err := k.check(p, owner); err != nil {
				return nil, err
			}
			cells[i].flows = len(p.Flows)
			cells[i].more = p.Next != ""
		}
	}
	for round := 0; round < r.cfg.Rounds; round++ {
		for i, k := range kinds {
			times := make([]float64, 0, r.sz.listCalls)
			before, err := commandStats(ctx, admin)
			if err != nil {
				return nil, err
			}
			t0, c0 := hook.trips.Load(), hook.cmds.Load()
			for c := 0; c < r.sz.listCalls; c++ {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				t := time.Now()
				p, err := k.call(ctx, m, owner)
				times = append(times, float64(time.Since(t).Nanoseconds())/1e3)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", k.name, err)
				}
				if len(p.Flows) != cells[i].flows {
					return nil, fmt.Errorf("%s: page of %d flows, then of %d", k.name, cells[i].flows, len(p.Flows))
				}
			}
			trips[i] += hook.trips.Load() - t0
			cmds[i] += hook.cmds.Load() - c0
			after, err := commandStats(ctx, admin)
			if err != nil {
				return nil, err
			}
			redisUs[i] += listRedisUsec(before, after)
			calls[i] += r.sz.listCalls
			roundMeds[i] = append(roundMeds[i], median(times))
		}
	}
	for i := range kinds {
		cells[i].med = median(roundMeds[i])
		cells[i].lo, cells[i].hi = minMax(roundMeds[i])
		cells[i].trips = float64(trips[i]) / float64(calls[i])
		cells[i].cmds = float64(cmds[i]) / float64(calls[i])
		cells[i].redisUs = float64(redisUs[i]) / float64(calls[i])
	}
	return cells, nil
}

// listRedisUsec is the Redis time (INFO commandstats usec) of a window
// of listing calls, each command counted once: a script's time includes
// the commands it calls, which commandstats counts again by name, so
// with scripts in the window it is theirs plus the HGETALLs and HGETs
// (the flows and the layout, which no listing script calls); without,
// every command but INFO.
func listRedisUsec(before, after map[string]cmdStat) int64 {
	if sc := scriptDelta(before, after); sc.calls > 0 {
		return sc.usec + statDelta(before, after, "hgetall").usec + statDelta(before, after, "hget").usec
	}
	var us int64
	for name := range after {
		if name != "info" {
			us += statDelta(before, after, name).usec
		}
	}
	return us
}

// ownerCount is the size of an owner's index over every shard.
func ownerCount(ctx context.Context, c redis.UniversalClient, prefix, owner string) (int, error) {
	pipe := c.Pipeline()
	cmds := make([]*redis.IntCmd, defaultShards)
	for s := range cmds {
		cmds[s] = pipe.ZCard(ctx, prefix+":{"+strconv.Itoa(s)+"}:owner:"+owner)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, err
	}
	total := 0
	for _, c := range cmds {
		total += int(c.Val())
	}
	return total, nil
}

// createWaiting creates count flows with the Manager and moves each to
// waiting on a timer a day ahead.
func createWaiting(ctx context.Context, m *taskflow.Manager, count, workers int) ([]uuid.UUID, error) {
	ids := make([]uuid.UUID, count)
	deadline := time.Now().Add(24 * time.Hour)
	err := parallel(ctx, workers, count, func(ctx context.Context, i int) error {
		fl, err := m.CreateMirrored(ctx, taskflow.CreateManagedInput{
			ControllerID: fillController, Goal: fillGoal, OwnerSessionKey: fillOwner(i, 100),
			RequesterOrigin: fillOrigin, CurrentStep: fillStep, State: json.RawMessage(`{}`),
		})
		if err != nil {
			return err
		}
		if _, err := m.SetWaiting(ctx, fl.ID, taskflow.WaitTimer(deadline)); err != nil {
			return err
		}
		ids[i] = fl.ID
		return nil
	})
	return ids, err
}

// listWalk is what a paging walk saw.
type listWalk struct {
	label                            string
	pages, listed                    int
	resumedUnlisted, cancelledListed int
	dups, skipped, ghosts            int
	wrongStatus, foreign             int
}

func (w listWalk) ok() bool {
	return w.dups == 0 && w.skipped == 0 && w.ghosts == 0 && w.wrongStatus == 0 && w.foreign == 0
}

// walkWhileMoving pages through ListByStatusPage(waiting) over ids (all
// waiting, nothing else in the space), moving flows out of waiting
// between pages: it resumes flows not listed yet (they must never be
// listed) and cancels flows already listed (they must not come back). It
// counts flows seen twice, flows that stayed waiting and were skipped,
// resumed flows listed anyway, and listed flows not in waiting.
func walkWhileMoving(ctx context.Context, m *taskflow.Manager, ids []uuid.UUID, limit int, label string) (listWalk, error) {
	w := listWalk{label: label}
	seen := map[uuid.UUID]int{}
	resumed := map[uuid.UUID]bool{}   // moved out before being listed
	cancelled := map[uuid.UUID]bool{} // moved out after being listed
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	unlisted := func() []uuid.UUID {
		var out []uuid.UUID
		for _, id := range ids {
			if seen[id] == 0 && !resumed[id] {
				out = append(out, id)
			}
		}
		return out
	}
	listedLive := func() []uuid.UUID {
		var out []uuid.UUID
		for _, id := range ids {
			if seen[id] > 0 && !cancelled[id] {
				out = append(out, id)
			}
		}
		return out
	}
	resume := func(id uuid.UUID) error {
		if resumed[id] || seen[id] > 0 {
			return nil
		}
		if _, err := m.Resume(ctx, id, nil); err != nil {
			return fmt.Errorf("walk: resume %s: %w", id, err)
		}
		resumed[id] = true
		return nil
	}
	cancel := func(id uuid.UUID) error {
		if cancelled[id] || seen[id] == 0 {
			return nil
		}
		if _, err := m.Cancel(ctx, id); err != nil {
			return fmt.Errorf("walk: cancel %s: %w", id, err)
		}
		cancelled[id] = true
		return nil
	}
	cursor := ""
	for {
		if err := ctx.Err(); err != nil {
			return w, err
		}
		p, err := m.ListByStatusPage(ctx, taskflow.StatusWaiting, taskflow.WithLimit(limit), taskflow.WithCursor(cursor))
		if err != nil {
			return w, fmt.Errorf("walk: page %d: %w", w.pages+1, err)
		}
		w.pages++
		for _, fl := range p.Flows {
			seen[fl.ID]++
			w.listed++
			if fl.Status != taskflow.StatusWaiting {
				w.wrongStatus++
			}
		}
		if p.Next == "" {
			break
		}
		if w.pages > 10*len(ids)/max(limit, 1)+10 {
			return w, fmt.Errorf("walk: %d pages for %d flows: the cursor does not advance", w.pages, len(ids))
		}
		cursor = p.Next
		// Resume the first flows of the next page: the ones right after
		// the cursor.
		peek, err := m.ListByStatusPage(ctx, taskflow.StatusWaiting, taskflow.WithLimit(2), taskflow.WithCursor(cursor))
		if err != nil {
			return w, fmt.Errorf("walk: peek: %w", err)
		}
		for _, fl := range peek.Flows {
			if err := resume(fl.ID); err != nil {
				return w, err
			}
		}
		un := unlisted()
		rng.Shuffle(len(un), func(i, j int) { un[i], un[j] = un[j], un[i] })
		for _, id := range un[:min(3, len(un))] {
			if err := resume(id); err != nil {
				return w, err
			}
		}
		// Cancel the flow the cursor points at, and some listed ones.
		if len(p.Flows) > 0 {
			if err := cancel(p.Flows[len(p.Flows)-1].ID); err != nil {
				return w, err
			}
		}
		ls := listedLive()
		rng.Shuffle(len(ls), func(i, j int) { ls[i], ls[j] = ls[j], ls[i] })
		for _, id := range ls[:min(3, len(ls))] {
			if err := cancel(id); err != nil {
				return w, err
			}
		}
	}
	w.resumedUnlisted, w.cancelledListed = len(resumed), len(cancelled)
	for _, id := range ids {
		switch c := seen[id]; {
		case c > 1:
			w.dups++
		case c == 0 && !resumed[id]:
			w.skipped++
		case c > 0 && resumed[id]:
			w.ghosts++
		}
	}
	// Nothing outside ids may appear.
	for id := range seen {
		if !slices.Contains(ids, id) {
			w.foreign++
		}
	}
	return w, nil
}
