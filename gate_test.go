package taskflow

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

// gatedInput is a running flow of controller "ctl/gate" with keys and a
// priority.
func gatedInput(goal string, priority int, keys ...string) CreateManagedInput {
	in := seedInput()
	in.ControllerID = "ctl/gate"
	in.Goal = goal
	in.Concurrency = keys
	in.Priority = priority
	return in
}

// claimNow claims a flow of "ctl/gate" without waiting.
func claimNow(t *testing.T, e *env, worker string) (*Flow, *Lease) {
	t.Helper()
	f, l, err := e.m.Claim(e.ctx, "ctl/gate", worker, time.Minute, WithClaimWait(0))
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	return f, l
}

func TestGateConcurrencyLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		if err := e.m.SetKeyLimit(ctx, KeyLimit{Key: "tenant:acme", Concurrency: 2}); err != nil {
			t.Fatal(err)
		}
		var ids []uuid.UUID
		for i := range 5 {
			f := must(t, try(e.m.CreateMirrored(ctx, gatedInput(fmt.Sprint("job ", i), 0, "tenant:acme"))))
			if len(f.Concurrency) != 1 || f.Concurrency[0] != "tenant:acme" {
				t.Fatalf("created with keys %v", f.Concurrency)
			}
			ids = append(ids, f.ID)
			e.clock.Advance(time.Millisecond) // age orders a group's flows
		}
		var leases []*Lease
		for i := range 2 {
			f, l := claimNow(t, e, "w")
			if f == nil || f.ID != ids[i] {
				t.Fatalf("claim %d: %v, want the oldest %s", i, f, ids[i])
			}
			leases = append(leases, l)
		}
		if f, _ := claimNow(t, e, "w"); f != nil {
			t.Fatalf("a third claim under a limit of 2 got %s", f.ID)
		}
		use := must(t, try(e.m.KeyLimits(ctx)))
		if len(use) != 1 || use[0].InFlight != 2 || use[0].Backlog != 3 || use[0].Concurrency != 2 {
			t.Fatalf("key limits: %+v", use)
		}
		// A finish frees a slot: the next flow is claimed.
		must(t, try(e.m.Finish(ctx, leases[0].FlowID, nil, WithLease(leases[0]))))
		f, l := claimNow(t, e, "w")
		if f == nil || f.ID != ids[2] {
			t.Fatalf("after a finish: %v, want %s", f, ids[2])
		}
		// A release frees one, and the flow goes back on the lane,
		// behind the flows that waited.
		if err := e.m.Release(ctx, l); err != nil {
			t.Fatal(err)
		}
		f, l = claimNow(t, e, "w")
		if f == nil || f.ID != ids[3] {
			t.Fatalf("after a release: %v, want %s", f, ids[3])
		}
		if f, _ := claimNow(t, e, "w"); f != nil {
			t.Fatalf("a claim over the limit after a release got %s", f.ID)
		}
		// An expired lease frees its slot without any call.
		e.clock.Advance(2 * time.Minute)
		f, _ = claimNow(t, e, "w")
		if f == nil {
			t.Fatal("no claim once the leases expired")
		}
		// Removing the limit admits the rest.
		if err := e.m.DeleteKeyLimit(ctx, "tenant:acme"); err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			f, _ := claimNow(t, e, "w")
			if f == nil {
				break
			}
			n++
		}
		if n == 0 {
			t.Fatal("nothing claimed once the limit was deleted")
		}
		_ = l
	})
}

func TestGateFairAndPriority(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		for i := range 30 {
			must(t, try(e.m.CreateMirrored(ctx, gatedInput(fmt.Sprint("a ", i), 0, "tenant:a"))))
			e.clock.Advance(time.Millisecond)
		}
		var bs []uuid.UUID
		for i := range 3 {
			bs = append(bs, must(t, try(e.m.CreateMirrored(ctx, gatedInput(fmt.Sprint("b ", i), 0, "tenant:b")))).ID)
		}
		urgent := must(t, try(e.m.CreateMirrored(ctx, gatedInput("urgent", 5, "tenant:a"))))
		f, _ := claimNow(t, e, "w")
		if f == nil || f.ID != urgent.ID {
			t.Fatalf("first claim %v, want the urgent flow", f)
		}
		seenB := 0
		for i := 0; i < 8; i++ {
			f, _ := claimNow(t, e, "w")
			if f == nil {
				t.Fatal("lane ran dry")
			}
			if f.Concurrency[0] == "tenant:b" {
				seenB++
			}
		}
		if seenB != 3 {
			t.Fatalf("%d of tenant b's 3 flows in the first 8 claims", seenB)
		}
	})
}

func TestGateBadInput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		for _, in := range []CreateManagedInput{
			gatedInput("x", 0, "has space"),
			gatedInput("x", 0, "a", "a"),
			gatedInput("x", 10, "a"),
			gatedInput("x", -1),
			gatedInput("x", 0, "a", "b", "c", "d", "e"),
		} {
			if _, err := e.m.CreateMirrored(ctx, in); !errors.Is(err, ErrInvalidData) {
				t.Fatalf("%v %d: %v, want ErrInvalidData", in.Concurrency, in.Priority, err)
			}
		}
		for _, l := range []KeyLimit{{Key: ""}, {Key: "a|b"}, {Key: "a", Concurrency: -1}, {Key: "a", Weight: 1001}, {Key: "a", Rate: 1, Per: time.Microsecond}} {
			if err := e.m.SetKeyLimit(ctx, l); !errors.Is(err, ErrInvalidData) {
				t.Fatalf("%+v: %v, want ErrInvalidData", l, err)
			}
		}
	})
}

// createGated creates n flows of controller ctl from 16 goroutines,
// input(i) giving the i-th; it returns their ids by i.
func createGated(t *testing.T, e *env, n int, input func(i int) CreateManagedInput) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f, err := e.m.CreateMirrored(e.ctx, input(i))
				if err != nil {
					errs <- fmt.Errorf("create %d: %w", i, err)
					return
				}
				ids[i] = f.ID
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	return ids
}

// gateChaosController is the controller of the gate's chaos test.
const gateChaosController = "ctl/gate-chaos"

// gateChaosLimits are the chaos test's keys and their concurrency limits.
var gateChaosLimits = map[string]int{"lim:1": 1, "lim:3": 3, "lim:10": 10}

// holdSpan is a stretch of the test's sequence during which a worker held
// a live lease of a flow carrying key: from a number taken after its Claim
// returned to one taken before the call that ended it (or before it
// walked away), both at a moment the test's clock had not passed the
// lease's expiry. It lies within the lease's life, so two spans of a key
// that overlap are two leases of that key live at once.
type holdSpan struct {
	key        string
	start, end int64
}

// TestGateChaos: 16 workers on three managers claim flows carrying one
// or two keys among limits 1, 3 and 10, hold them a moment, and finish,
// release, extend or walk away holding the lease (killed), while two
// engines tick and the clock runs 25 times faster than the wall clock,
// so leases expire. Every flow finishes once; the in-flight count of each
// key the admission script read in the claim never exceeds its limit; no
// two leases of a key are ever live at once beyond its limit, as the
// workers saw them; and once the fleet stops, no slot, admission or lane
// entry is left.
func TestGateChaos(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		start := time.Now()
		n := 400
		if e.b.mini != nil {
			n = 200
		}
		for k, c := range gateChaosLimits {
			if err := e.m.SetKeyLimit(ctx, KeyLimit{Key: k, Concurrency: c}); err != nil {
				t.Fatal(err)
			}
		}
		names := []string{"lim:1", "lim:3", "lim:10"}
		rnd := rand.New(rand.NewPCG(uint64(n), 24))
		keysOf := make([][]string, n)
		for i := range keysOf {
			p := rnd.Perm(len(names))
			keysOf[i] = []string{names[p[0]]}
			if rnd.IntN(2) == 0 {
				keysOf[i] = append(keysOf[i], names[p[1]])
			}
		}
		ids := createGated(t, e, n, func(i int) CreateManagedInput {
			in := gatedInput(fmt.Sprint("chaos ", i), 0, keysOf[i]...)
			in.ControllerID = gateChaosController
			return in
		})

		var (
			seq                                           atomic.Int64
			mu                                            sync.Mutex
			spans                                         []holdSpan
			samples                                       = map[string]int{}
			over                                          []string
			undecoded                                     = map[int]int{} // admissions whose counts do not match their keys, by keys
			finished, killed, released, extended, lostEnd atomic.Int64
			expired, repaired                             atomic.Int64
			finishedBy                                    sync.Map
		)
		// hold returns the span's mark: a sequence number taken while l
		// was live (else -1).
		mark := func(l *Lease) int64 {
			s := seq.Add(1)
			if !e.clock.Now().Before(l.ExpiresAt) {
				return -1
			}
			return s
		}
		held := func(keys []string, from, to int64) {
			if from < 0 || to < 0 || to <= from {
				return
			}
			mu.Lock()
			for _, k := range keys {
				spans = append(spans, holdSpan{k, from, to})
			}
			mu.Unlock()
		}
		admitted := func(gk string, counts []int) {
			keys, _ := parseGateField(gk)
			mu.Lock()
			defer mu.Unlock()
			if len(counts) != len(keys) {
				undecoded[len(keys)]++
				return
			}
			for i, k := range keys {
				samples[k]++
				if counts[i] > gateChaosLimits[k] || counts[i] < 1 {
					over = append(over, fmt.Sprintf("%s: %d in flight after an admission, limit %d", k, counts[i], gateChaosLimits[k]))
				}
			}
		}

		runCtx, stop := context.WithCancel(ctx)
		defer stop()
		var wg sync.WaitGroup
		var managers []*Manager
		for range 3 {
			st := e.reopenStore(e.client)
			st.onAdmit = admitted
			managers = append(managers, NewManager(st))
		}
		defer func() {
			stop()
			wg.Wait()
			for _, m := range managers {
				_ = m.Close()
			}
		}()
		// The clock: +500 ms every 20 ms; leases last 5 s (200 ms of wall time).
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
				e.clock.Advance(500 * time.Millisecond)
			}
		}()
		for i := range 2 {
			eng := NewWaitEngine(managers[i], WithLogger(quietLogger()))
			wg.Add(1)
			go func() {
				defer wg.Done()
				for runCtx.Err() == nil {
					rep := eng.Tick(runCtx)
					if rep.Err != nil && runCtx.Err() == nil {
						t.Errorf("tick: %v", rep.Err)
						return
					}
					expired.Add(int64(rep.LeasesExpired))
					repaired.Add(int64(rep.SlotsRepaired))
					time.Sleep(5 * time.Millisecond)
				}
			}()
		}
		killsMax := int64(n / 20)
		var workers atomic.Int64
		var spawn func()
		spawn = func() {
			w := workers.Add(1)
			m := managers[int(w)%len(managers)]
			id := fmt.Sprint("w", w)
			r := rand.New(rand.NewPCG(uint64(w), 7))
			wg.Add(1)
			go func() {
				defer wg.Done()
				for runCtx.Err() == nil {
					f, l, err := m.Claim(runCtx, gateChaosController, id, chaosLease, WithClaimWait(100*time.Millisecond))
					if err != nil {
						if runCtx.Err() == nil {
							t.Errorf("%s: claim: %v", id, err)
						}
						return
					}
					if f == nil {
						continue
					}
					from := mark(l)
					keys := f.Concurrency
					// Work a moment, so that leases overlap (long enough
					// for it on a slow backend: miniredis under -race).
					time.Sleep(time.Duration(2+r.IntN(8)) * time.Millisecond)
					roll := r.IntN(100)
					switch {
					case roll < 5 && killed.Load() < killsMax:
						// Killed holding the lease: a new worker takes its place.
						held(keys, from, mark(l))
						killed.Add(1)
						spawn()
						return
					case roll < 12:
						held(keys, from, mark(l))
						if err := m.Release(runCtx, l); err != nil && !errors.Is(err, ErrLeaseLost) && runCtx.Err() == nil {
							t.Errorf("%s: release %s: %v", id, f.ID, err)
							return
						}
						released.Add(1)
						continue
					case roll < 20:
						l2, err := m.Extend(runCtx, l, chaosLease)
						if err == nil {
							extended.Add(1)
							l = l2
						}
					}
					to := mark(l)
					_, err = m.Finish(runCtx, f.ID, map[string]string{"by": id}, WithLease(l))
					switch {
					case err == nil:
						held(keys, from, to)
						if prev, dup := finishedBy.LoadOrStore(f.ID, id); dup {
							t.Errorf("%s finished by %s and %s", f.ID, prev, id)
						}
						finished.Add(1)
					case errors.Is(err, ErrLeaseLost):
						lostEnd.Add(1) // the lease expired: the flow is claimed again
					default:
						if runCtx.Err() == nil {
							t.Errorf("%s: finish %s: %v", id, f.ID, err)
						}
						return
					}
				}
			}()
		}
		for range 16 {
			spawn()
		}
		deadline := time.Now().Add(90 * time.Second)
		for finished.Load() < int64(n) && !t.Failed() {
			if time.Now().After(deadline) {
				t.Fatalf("after 90 s: %d of %d flows finished; %d killed, %d released, %d ends refused for a lost lease",
					finished.Load(), n, killed.Load(), released.Load(), lostEnd.Load())
			}
			time.Sleep(20 * time.Millisecond)
		}
		stop()
		wg.Wait()
		if t.Failed() {
			return
		}

		// Every flow finished, once.
		for _, id := range ids {
			if f := must(t, try(e.m.Get(ctx, id))); f.Status != StatusFinished {
				t.Fatalf("flow %s is %s", id, f.Status)
			}
			if k := countKind(eventKinds(t, e, id), EventFinished); k != 1 {
				t.Fatalf("flow %s finished %d times", id, k)
			}
		}
		// The counts the admissions read never passed a limit.
		mu.Lock()
		defer mu.Unlock()
		if len(over) > 0 {
			t.Fatalf("%d admissions over a limit, e.g. %s", len(over), over[0])
		}
		if len(undecoded) > 0 {
			// (miniredis's table.concat gave a lone count back as a
			// number, which gateAdmit once dropped.)
			t.Fatalf("admissions with a count short for their keys, by number of keys: %v", undecoded)
		}
		for k := range gateChaosLimits {
			if samples[k] < n/10 {
				t.Errorf("key %s sampled %d times in %d flows", k, samples[k], n)
			}
		}
		// No more leases of a key were live at once than its limit.
		most := map[string]int{}
		type edge struct {
			at   int64
			open int
		}
		byKey := map[string][]edge{}
		for _, s := range spans {
			byKey[s.key] = append(byKey[s.key], edge{s.start, 1}, edge{s.end, -1})
		}
		for k, es := range byKey {
			sort.Slice(es, func(i, j int) bool { return es[i].at < es[j].at })
			live := 0
			for _, x := range es {
				live += x.open
				most[k] = max(most[k], live)
			}
			if most[k] > gateChaosLimits[k] {
				t.Fatalf("%s: %d leases live at once, limit %d", k, most[k], gateChaosLimits[k])
			}
		}
		// The limits were reached: the test did test them.
		if most["lim:3"] < 2 || most["lim:10"] < 3 {
			t.Fatalf("leases live at once at most %v: the fleet never pressed the limits", most)
		}

		// Once the leases are past and a tick ran, nothing is held or queued.
		e.clock.Advance(2 * chaosLease)
		if rep := e.engine().Tick(ctx); rep.Err != nil {
			t.Fatalf("final tick: %v", rep.Err)
		} else {
			repaired.Add(int64(rep.SlotsRepaired))
		}
		for _, u := range must(t, try(e.m.KeyLimits(ctx))) {
			if u.InFlight != 0 || u.Backlog != 0 {
				t.Fatalf("after the run: %+v", u)
			}
		}
		if left := e.client.ZCard(ctx, e.store.keys.gateAdmissions()).Val(); left != 0 {
			t.Fatalf("%d admissions left", left)
		}
		if left := e.client.HLen(ctx, e.store.keys.gateAdmitKeys()).Val(); left != 0 {
			t.Fatalf("%d admissions' keys left", left)
		}
		if left := e.client.ZCard(ctx, e.store.keys.gateLevels(gateChaosController)).Val(); left != 0 {
			t.Fatalf("%d priority levels left on the lane", left)
		}
		if killed.Load() == 0 || expired.Load() < killed.Load() {
			t.Fatalf("%d workers killed holding a lease, %d leases expired", killed.Load(), expired.Load())
		}
		mustVerify(t, e)
		t.Logf("%d flows, %d workers: %d finished, %d released, %d extended, %d killed holding a lease, %d leases expired, "+
			"%d ends refused for a lost lease, %d slots repaired; admissions sampled %v; most leases live at once %v; %v",
			n, workers.Load(), finished.Load(), released.Load(), extended.Load(), killed.Load(), expired.Load(),
			lostEnd.Load(), repaired.Load(), samples, most, time.Since(start).Round(time.Millisecond))
	})
}

// TestGateFairness: tenant A has 10,000 ready flows, tenant B 10 made
// after them, equal weights: B's flows all start within the first 40
// claims (the fair order takes turns, so within the first 20).
func TestGateFairness(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		start := time.Now()
		nA := 10_000
		if e.b.mini != nil && testing.Short() {
			nA = 1_000
		}
		createGated(t, e, nA, func(i int) CreateManagedInput { return gatedInput(fmt.Sprint("a ", i), 0, "tenant:a") })
		e.clock.Advance(time.Millisecond)
		bs := createGated(t, e, 10, func(i int) CreateManagedInput { return gatedInput(fmt.Sprint("b ", i), 0, "tenant:b") })
		made := time.Since(start)
		isB := map[uuid.UUID]bool{}
		for _, id := range bs {
			isB[id] = true
		}
		var at []int
		for i := 1; i <= 40; i++ {
			f, _ := claimNow(t, e, "w")
			if f == nil {
				t.Fatalf("claim %d found nothing", i)
			}
			if isB[f.ID] {
				at = append(at, i)
			}
		}
		if len(at) != 10 {
			t.Fatalf("B's flows started at claims %v of the first 40: %d of 10", at, len(at))
		}
		use := must(t, try(e.m.KeyLimits(ctx))) // no limit set: none listed
		if len(use) != 0 {
			t.Fatalf("key limits %+v", use)
		}
		t.Logf("%d flows of A, then 10 of B: B started at claims %v (created in %v, in all %v)",
			nA, at, made.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	})
}

// TestGatePriority: an urgent flow created last is claimed next, above a
// backlog of two tenants; priorities order the flows within a key, age
// breaks ties.
func TestGatePriority(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		createGated(t, e, 300, func(i int) CreateManagedInput { return gatedInput(fmt.Sprint("a ", i), 0, "tenant:a") })
		createGated(t, e, 300, func(i int) CreateManagedInput { return gatedInput(fmt.Sprint("b ", i), 0, "tenant:b") })
		e.clock.Advance(time.Millisecond)
		var mid []uuid.UUID // priority 3, oldest first
		for i := range 5 {
			mid = append(mid, must(t, try(e.m.CreateMirrored(e.ctx, gatedInput(fmt.Sprint("b mid ", i), 3, "tenant:b")))).ID)
			e.clock.Advance(time.Millisecond)
		}
		urgent := must(t, try(e.m.CreateMirrored(e.ctx, gatedInput("urgent", 9, "tenant:a"))))
		next := func(want uuid.UUID, what string) {
			t.Helper()
			f, _ := claimNow(t, e, "w")
			if f == nil || f.ID != want {
				t.Fatalf("%s: claimed %v, want %s", what, f, want)
			}
		}
		next(urgent.ID, "urgent created last")
		for i, id := range mid {
			next(id, fmt.Sprint("priority 3, number ", i))
		}
		for range 7 {
			if f, _ := claimNow(t, e, "w"); f == nil || f.Priority != 0 {
				t.Fatalf("after the urgent flows: %v", f)
			}
		}
		// Mid-stream: an urgent flow with no key, then one of a new tenant.
		noKey := must(t, try(e.m.CreateMirrored(e.ctx, gatedInput("urgent, no key", 9))))
		next(noKey.ID, "urgent with no key")
		c := must(t, try(e.m.CreateMirrored(e.ctx, gatedInput("c", 1, "tenant:c"))))
		next(c.ID, "priority 1 of a new tenant")
	})
}

// TestGateWeights: weights 2:1 give 2:1 claims while both groups have a
// backlog.
func TestGateWeights(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		if err := e.m.SetKeyLimit(ctx, KeyLimit{Key: "tenant:heavy", Weight: 2}); err != nil {
			t.Fatal(err)
		}
		if err := e.m.SetKeyLimit(ctx, KeyLimit{Key: "tenant:light", Weight: 1}); err != nil {
			t.Fatal(err)
		}
		createGated(t, e, 200, func(i int) CreateManagedInput {
			return gatedInput(fmt.Sprint("heavy ", i), 0, "tenant:heavy")
		})
		createGated(t, e, 200, func(i int) CreateManagedInput {
			return gatedInput(fmt.Sprint("light ", i), 0, "tenant:light")
		})
		got := map[string]int{}
		for range 150 {
			f, _ := claimNow(t, e, "w")
			if f == nil {
				t.Fatal("the lane ran dry")
			}
			got[f.Concurrency[0]]++
		}
		if h, l := got["tenant:heavy"], got["tenant:light"]; h < 97 || h > 103 || h+l != 150 {
			t.Fatalf("150 claims: %d heavy, %d light; want about 100 and 50", h, l)
		}
		use := must(t, try(e.m.KeyLimits(ctx)))
		if len(use) != 2 || use[0].InFlight != got["tenant:heavy"] || use[1].InFlight != got["tenant:light"] ||
			use[0].Backlog+use[1].Backlog != 250 {
			t.Fatalf("key limits: %+v", use)
		}
		t.Logf("150 claims at weights 2:1: %v", got)
	})
}

// TestGateRate: a key limited to 50 claims per second is claimed at
// 50 ± 5 % per second by 16 hungry workers on four managers, on the real
// clock, over 20 s on the real Redis calling scripts with FCALL and 5 s
// on the others (EVALSHA runs the same scripts; miniredis and the
// cluster keep the suite's time). The rate is counted by the admission's
// own clock reading (the lease's expiry less its duration), after a
// warm-up that spends the bucket's burst.
func TestGateRate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		const (
			rate  = 50
			lease = time.Minute
			warm  = 2 * time.Second
		)
		window := 5 * time.Second
		if e.b.name == "redis" {
			window = 20 * time.Second
		}
		if err := e.m.SetKeyLimit(ctx, KeyLimit{Key: "model:x", Rate: rate}); err != nil {
			t.Fatal(err)
		}
		n := int((warm+window).Seconds()*rate) + rate + 300
		createGated(t, e, n, func(i int) CreateManagedInput { return gatedInput(fmt.Sprint("call ", i), 0, "model:x") })

		runCtx, stop := context.WithCancel(ctx)
		defer stop()
		var (
			mu  sync.Mutex
			ats []time.Time // admissions, by the store's clock
			ret []time.Time // Claim's returns, by the wall clock
			wg  sync.WaitGroup
		)
		var managers []*Manager
		for range 4 {
			managers = append(managers, NewManager(e.reopenStore(e.client)))
		}
		begin := time.Now()
		for w := range 16 {
			m := managers[w%len(managers)]
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprint("w", w)
				for runCtx.Err() == nil {
					f, l, err := m.Claim(runCtx, "ctl/gate", id, lease, WithClaimWait(time.Second))
					if err != nil {
						if runCtx.Err() == nil {
							t.Errorf("%s: claim: %v", id, err)
						}
						return
					}
					if f == nil {
						continue
					}
					mu.Lock()
					ats = append(ats, l.ExpiresAt.Add(-lease))
					ret = append(ret, time.Now())
					mu.Unlock()
					if _, err := m.Finish(runCtx, f.ID, nil, WithLease(l)); err != nil && runCtx.Err() == nil {
						t.Errorf("%s: finish: %v", id, err)
						return
					}
				}
			}()
		}
		time.Sleep(warm + window + 500*time.Millisecond)
		stop()
		wg.Wait()
		for _, m := range managers {
			_ = m.Close()
		}
		if t.Failed() {
			return
		}
		from, to := begin.Add(warm), begin.Add(warm+window)
		in, first, returned := 0, 0, 0
		for i, at := range ats {
			if !at.Before(from) && at.Before(to) {
				in++
			}
			if !ret[i].Before(from) && ret[i].Before(to) {
				returned++
			}
			if at.Before(begin.Add(time.Second)) {
				first++
			}
		}
		if len(ats) >= n {
			t.Fatalf("the workers ran out of flows (%d claimed): they were not hungry", len(ats))
		}
		got := float64(in) / window.Seconds()
		if got < rate*0.95 || got > rate*1.05 {
			t.Fatalf("%d claims in %v: %.2f per second, want %d ± 5%%", in, window, got, rate)
		}
		t.Logf("%d claims in %v after a %v warm-up: %.2f per second (by the wall clock at Claim's return: %.2f); "+
			"%d in the first second (burst %d); %d flows claimed in all",
			in, window, warm, got, float64(returned)/window.Seconds(), first, rate, len(ats))
	}, WithClock(time.Now))
}

// TestGateResumedFlowsAreQueuedAtOnce: a flow with keys resumed by an
// external event, by the end of a child its join waited for, or by an
// event kept early that its wait takes, is on its lane at once: a
// worker claims it with no engine's tick in between.
func TestGateResumedFlowsAreQueuedAtOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		claimed := func(name string, id uuid.UUID) {
			t.Helper()
			f, l := claimNow(t, e, "w")
			if f == nil || f.ID != id {
				t.Fatalf("%s: claimed %v, want %s", name, f, id)
			}
			must(t, try(e.m.Finish(ctx, f.ID, nil, WithLease(l))))
		}
		// An external event.
		f := must(t, try(e.m.CreateMirrored(ctx, gatedInput("event", 0, "tenant:acme"))))
		_, l := claimNow(t, e, "w")
		must(t, try(e.m.SetWaiting(ctx, f.ID, WaitExternalEvent("reply", "r-1"), WithLease(l))))
		if _, err := e.m.ResumeByCorrelation(ctx, "reply", "r-1", map[string]string{"ok": "yes"}); err != nil {
			t.Fatal(err)
		}
		claimed("external event", f.ID)
		// An event kept early, taken by the wait at once.
		f = must(t, try(e.m.CreateMirrored(ctx, gatedInput("early", 0, "tenant:acme"))))
		_, l = claimNow(t, e, "w")
		if _, err := e.m.ResumeByCorrelation(ctx, "reply", "r-2", nil); err != nil {
			t.Fatal(err)
		}
		if g := must(t, try(e.m.SetWaiting(ctx, f.ID, WaitExternalEvent("reply", "r-2"), WithLease(l)))); g.Status != StatusRunning {
			t.Fatalf("early event: the wait left the flow %s", g.Status)
		}
		claimed("early event", f.ID)
		// The end of the child its join waits for.
		p := must(t, try(e.m.CreateMirrored(ctx, gatedInput("parent", 0, "tenant:acme"))))
		_, l = claimNow(t, e, "w")
		kids := must(t, try(e.m.StartChildren(ctx, p.ID, []ChildInput{{Key: "k", Flow: fleetInput("ctl/kid")}})))
		must(t, try(e.m.SetWaiting(ctx, p.ID, WaitChildren(Join{}), WithLease(l))))
		kf, kl, err := e.m.Claim(ctx, "ctl/kid", "w", time.Minute, WithClaimWait(0))
		if err != nil || kf == nil || kf.ID != kids[0].ID {
			t.Fatalf("child claim: %v %v", kf, err)
		}
		must(t, try(e.m.Finish(ctx, kf.ID, nil, WithLease(kl))))
		claimed("children's join", p.ID)
	})
}

// TestGateStaleEntriesSpendNoRateToken: a rate token is spent on a
// claim, not on a lane entry whose flow is not to be leased: neither on
// one cancelled while it waited on its lane (its entry goes with it),
// nor on one whose take its shard refused (the admission gives its
// tokens back).
func TestGateStaleEntriesSpendNoRateToken(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		if err := e.m.SetKeyLimit(ctx, KeyLimit{Key: "model:x", Rate: 1, Per: time.Hour}); err != nil {
			t.Fatal(err)
		}
		// Cancelled on its lane.
		a := must(t, try(e.m.CreateMirrored(ctx, gatedInput("a", 0, "model:x"))))
		must(t, try(e.m.Cancel(ctx, a.ID)))
		e.clock.Advance(time.Millisecond)
		// Refused by its shard: its record no longer says what the lane
		// entry says (as after a change the lane has not seen yet).
		b := must(t, try(e.m.CreateMirrored(ctx, gatedInput("b", 0, "model:x"))))
		if err := e.client.HSet(ctx, e.store.keys.flow(b.ID), "gk", "0\nmodel:y").Err(); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Millisecond)
		c := must(t, try(e.m.CreateMirrored(ctx, gatedInput("c", 0, "model:x"))))
		if f, _ := claimNow(t, e, "w"); f == nil || f.ID != c.ID {
			t.Fatalf("claimed %v, want %s with the one token of the hour", f, c.ID)
		}
		if f, _ := claimNow(t, e, "w"); f != nil {
			t.Fatalf("a second claim in the hour got %s", f.ID)
		}
	})
}

// TestIdleFleetIgnoresFreedSlots: workers idle in Claim for a controller
// whose lane holds nothing held back send no command when a full key
// frees a slot elsewhere in the gate (its freed channel is shared by
// every controller).
func TestIdleFleetIgnoresFreedSlots(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		fleet := startIdleFleet(ctx, t, e, 4, "ctl/idle")
		defer fleet.wg.Wait()
		defer cancel()
		// A full key of another controller frees its slot, twice.
		if err := e.m.SetKeyLimit(e.ctx, KeyLimit{Key: "tenant:full", Concurrency: 1}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // the limit's own announcement
		fleet.reset()
		for range 2 {
			must(t, try(e.m.CreateMirrored(e.ctx, gatedInput("full", 0, "tenant:full"))))
			f, l := claimNow(t, e, "w")
			if f == nil {
				t.Fatal("nothing to claim")
			}
			must(t, try(e.m.Finish(e.ctx, f.ID, nil, WithLease(l))))
		}
		time.Sleep(time.Second)
		if n := fleet.sent(); n != 0 {
			t.Fatalf("an idle fleet sent %d commands when another controller's key freed a slot", n)
		}
	})
}
