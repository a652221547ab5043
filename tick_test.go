package taskflow

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

func TestTickTimers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		now := e.clock.Now()
		f := e.waitingFlow(t, WaitTimer(now.Add(time.Hour)))
		rep := eng.TickAt(e.ctx, now)
		if rep.Scanned != 1 || rep.Resumed != 0 || rep.StillWaiting != 1 || rep.Errors != 0 {
			t.Fatalf("future timer: %+v", rep)
		}
		rep = eng.TickAt(e.ctx, now.Add(time.Hour))
		if rep.Scanned != 1 || rep.Resumed != 1 || rep.StillWaiting != 0 || rep.Errors != 0 {
			t.Fatalf("due timer: %+v", rep)
		}
		got := must(t, try(e.m.Get(e.ctx, f.ID)))
		if got.Status != StatusRunning || got.Wait != nil || got.Revision != f.Revision+1 {
			t.Fatalf("resumed flow: %+v", got)
		}
		ev := must(t, try(e.m.ListEvents(e.ctx, f.ID, 1)))[0]
		if ev.Kind != EventResumed || string(ev.Payload) != `{"state_patch":null}` {
			t.Fatalf("event %+v", ev)
		}
		rep = eng.TickAt(e.ctx, now.Add(2*time.Hour))
		if rep.Resumed != 0 || rep.Scanned != 0 {
			t.Fatalf("second tick: %+v", rep)
		}
	})
}

func TestTickLeavesManualAndExternal(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		m := e.waitingFlow(t, WaitManual())
		x := e.waitingFlow(t, WaitExternalEvent("mail", "m-1"))
		rep := eng.TickAt(e.ctx, e.clock.Now().Add(365*24*time.Hour))
		if rep.Scanned != 2 || rep.StillWaiting != 2 || rep.Resumed != 0 {
			t.Fatalf("report %+v", rep)
		}
		for _, id := range []uuid.UUID{m.ID, x.ID} {
			if got := must(t, try(e.m.Get(e.ctx, id))); got.Status != StatusWaiting {
				t.Fatalf("flow %s is %s", id, got.Status)
			}
		}
	})
}

func TestTickCancelsCancelRequested(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		now := e.clock.Now()
		a := e.waitingFlow(t, WaitManual())
		b := e.waitingFlow(t, WaitTimer(now.Add(-time.Minute))) // due, but cancel wins
		c := e.waitingFlow(t, WaitTimer(now.Add(time.Hour)))
		for _, f := range []*Flow{a, b, c} {
			must(t, try(e.m.RequestCancel(e.ctx, f.ID)))
		}
		rep := eng.TickAt(e.ctx, now)
		if rep.Cancelled != 3 || rep.Resumed != 0 || rep.StillWaiting != 0 || rep.Scanned != 3 {
			t.Fatalf("report %+v", rep)
		}
		for _, f := range []*Flow{a, b, c} {
			got := must(t, try(e.m.Get(e.ctx, f.ID)))
			if got.Status != StatusCancelled || got.Wait != nil {
				t.Fatalf("flow %+v", got)
			}
			if k := eventKinds(t, e, f.ID); k[0] != EventCancelled {
				t.Fatalf("events %v", k)
			}
		}
		for shard := 0; shard < e.store.Shards(); shard++ {
			if n := e.client.SCard(e.ctx, e.store.keys.cancelWait(shard)).Val(); n != 0 {
				t.Fatalf("cancelwait left %d", n)
			}
			if n := e.client.ZCard(e.ctx, e.store.keys.timers(shard)).Val(); n != 0 {
				t.Fatalf("timers left %d", n)
			}
		}
	})
}

func TestTickSkipsUnreadableWait(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		now := e.clock.Now()
		bad := e.waitingFlow(t, WaitTimer(now.Add(-time.Second)))
		good := e.waitingFlow(t, WaitTimer(now.Add(-time.Second)))
		if err := e.client.HSet(e.ctx, e.store.keys.flow(bad.ID), "wait", "}garbage{").Err(); err != nil {
			t.Fatal(err)
		}
		rep := eng.TickAt(e.ctx, now)
		if rep.Resumed != 1 || rep.Errors != 1 || rep.StillWaiting != 1 {
			t.Fatalf("report %+v", rep)
		}
		if g := must(t, try(e.m.Get(e.ctx, good.ID))); g.Status != StatusRunning {
			t.Fatal("good flow not resumed")
		}
		// Reported once, not on every tick.
		if rep := eng.TickAt(e.ctx, now); rep.Errors != 0 {
			t.Fatalf("second tick %+v", rep)
		}
	})
}

// TestFleetResumesEachDueFlowOnce: four engines on four clients tick the
// same flow space at once; every due flow is resumed exactly once.
func TestFleetResumesEachDueFlowOnce(t *testing.T) {
	const due, notDue, engines = 2000, 50, 4
	forEachBackend(t, func(t *testing.T, e *env) {
		now := e.clock.Now()
		ids := fillWaiting(t, e, due, now.Add(-time.Minute))
		fillWaiting(t, e, notDue, now.Add(time.Hour))
		reports := make([]TickReport, engines)
		var wg sync.WaitGroup
		for i := 0; i < engines; i++ {
			eng := NewWaitEngine(NewManager(e.reopenStore(e.b.client(t))), WithLogger(quietLogger()), WithTickBatch(50))
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				reports[i] = eng.TickAt(e.ctx, now)
			}(i)
		}
		wg.Wait()
		sum := 0
		for _, r := range reports {
			if r.Errors != 0 {
				t.Fatalf("report with errors: %+v", r)
			}
			sum += r.Resumed
		}
		if sum != due {
			t.Fatalf("resumed %d in all, want %d (%+v)", sum, due, reports)
		}
		for _, id := range ids {
			if n := countKind(eventKinds(t, e, id), EventResumed); n != 1 {
				t.Fatalf("flow %s has %d resumed events", id, n)
			}
		}
		left := 0
		for shard := 0; shard < e.store.Shards(); shard++ {
			left += int(e.client.ZCount(e.ctx, e.store.keys.timers(shard), "-inf", fmt.Sprint(now.UnixMilli())).Val())
		}
		if left != 0 {
			t.Fatalf("%d due timers left", left)
		}
		if rep := NewWaitEngine(e.m, WithLogger(quietLogger())).TickAt(e.ctx, now); rep.StillWaiting != notDue || rep.Resumed != 0 {
			t.Fatalf("after: %+v", rep)
		}
	})
}

// fillWaiting creates n waiting flows with a timer at `at`, pipelining the
// manager's scripts for speed.
func fillWaiting(t testing.TB, e *env, n int, at time.Time) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, 0, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f, err := e.m.CreateMirrored(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})
			if err == nil {
				_, err = e.m.SetWaiting(e.ctx, f.ID, WaitTimer(at))
			}
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			ids = append(ids, f.ID)
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return ids
}

// An index entry that names no flow is a normal race between engines (or
// a flow pruned meanwhile): the tick drops it and says so at debug level,
// not as a warning. Only a drop with an error behind it warns.
func TestTickDropWithoutErrorIsNotAWarning(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		var logs bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		id := uuid.New()
		shard := e.store.keys.shardOf(id)
		due := float64(e.clock.Now().Add(-time.Minute).UnixMilli())
		if err := e.client.ZAdd(e.ctx, e.store.keys.timers(shard), redis.Z{Score: due, Member: id.String()}).Err(); err != nil {
			t.Fatal(err)
		}
		rep := e.engine(WithLogger(logger)).Tick(e.ctx)
		if rep.Dropped != 1 || rep.Err != nil {
			t.Fatalf("report %+v", rep)
		}
		if strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "level=DEBUG") ||
			!strings.Contains(logs.String(), "dropped=1") {
			t.Fatalf("logs:\n%s", logs.String())
		}
	})
}

// countingHook counts the commands a client sends, pipelined ones too.
type countingHook struct{ n atomic.Int64 }

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// flowInShard creates running flows until one lands in shard.
func (e *env) flowInShard(t testing.TB, shard int) *Flow {
	t.Helper()
	for {
		f := must(t, try(e.m.CreateMirrored(e.ctx, seedInput())))
		if e.store.keys.shardOf(f.ID) == shard {
			return f
		}
		if _, err := e.m.Cancel(e.ctx, f.ID); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTickDropsEntriesItCannotActOn fills one shard's tick indexes with
// entries no script can act on: records deleted by hand, cancelled flows
// left in the cancel set, a record of the wrong type, ids that are not
// canonical or belong to another shard, lease expiries without a lease.
// Each tick must drop them all in a number of commands proportional to
// their count (the old tick spun on them forever), count them, and still
// resume the one due timer queued behind them.
func TestTickDropsEntriesItCannotActOn(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		const n = 12 // of each kind; more than the batch of the first engine
		ctx := e.ctx
		now := e.clock.Now()
		past := now.Add(-time.Hour)
		k := e.store.keys
		want := 0
		for i := 0; i < n; i++ {
			// A waiting, cancel-requested timer flow whose record was deleted.
			f := e.flowInShard(t, 0)
			must(t, try(e.m.SetWaiting(ctx, f.ID, WaitTimer(past))))
			must(t, try(e.m.RequestCancel(ctx, f.ID)))
			if err := e.client.Del(ctx, k.flow(f.ID)).Err(); err != nil {
				t.Fatal(err)
			}
			want += 2 // its timer and its cancel entry
			// Waiting with a cancel request and no wait (the store layer
			// allows it), then cancelled: the cancel entry may stay.
			g := e.flowInShard(t, 0)
			g.Status, g.CancelRequested, g.Wait = StatusWaiting, true, nil
			g, _, err := e.store.UpdateAndAppend(ctx, g, "parked", nil)
			if err != nil {
				t.Fatal(err)
			}
			must(t, try(e.m.Cancel(ctx, g.ID)))
			if e.client.SIsMember(ctx, k.cancelWait(0), g.ID.String()).Val() {
				want++
			}
			// Entries that name no flow of this shard.
			other := e.flowInShard(t, 1)
			junk := []string{"not-a-uuid", strings.ToUpper(uuid.NewString()), other.ID.String()}
			for _, m := range junk {
				e.client.SAdd(ctx, k.cancelWait(0), m+"-"+string(rune('a'+i)))
				e.client.ZAdd(ctx, k.timers(0), redis.Z{Score: float64(past.UnixMilli()), Member: m + "-" + string(rune('a'+i))})
			}
			e.client.SAdd(ctx, k.cancelWait(0), other.ID.String())
			e.client.ZAdd(ctx, k.timers(0), redis.Z{Score: float64(past.UnixMilli()), Member: other.ID.String()})
			e.client.ZAdd(ctx, k.leaseExp(0), redis.Z{Score: float64(past.UnixMilli()), Member: f.ID.String()})
			want += 2*len(junk) + 3
		}
		// A record of the wrong type behind a timer and a cancel entry.
		bad := e.flowInShard(t, 0)
		must(t, try(e.m.SetWaiting(ctx, bad.ID, WaitTimer(past))))
		must(t, try(e.m.RequestCancel(ctx, bad.ID)))
		e.client.Del(ctx, k.flow(bad.ID))
		e.client.Set(ctx, k.flow(bad.ID), "not a hash", 0)
		want += 2
		// A healthy due timer queued behind everything else.
		good := e.flowInShard(t, 0)
		must(t, try(e.m.SetWaiting(ctx, good.ID, WaitTimer(now))))

		hook := &countingHook{}
		c := e.b.client(t)
		c.AddHook(hook)
		eng := NewWaitEngine(NewManager(e.reopenStore(c)), WithLogger(quietLogger()), WithTickBatch(5))
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a safety net only
		defer cancel()
		rep := eng.TickAt(tctx, now)
		if tctx.Err() != nil {
			t.Fatalf("the tick did not return: %d commands sent", hook.n.Load())
		}
		if rep.Dropped != want || rep.Resumed != 1 || rep.Errors != 2 {
			t.Fatalf("report %+v, want %d dropped, 1 resumed, 2 errors", rep, want)
		}
		// Every entry costs a bounded number of commands: one read, one
		// script or removal; a round re-reads a batch per index.
		if got, limit := hook.n.Load(), int64(10*want+200); got > limit {
			t.Fatalf("the tick sent %d commands for %d entries, want at most %d", got, want, limit)
		}
		t.Logf("%d entries dropped, 1 resumed, in %d commands", rep.Dropped, hook.n.Load())
		for _, key := range []string{k.cancelWait(0), k.timers(0), k.leaseExp(0)} {
			if typ := e.client.Type(ctx, key).Val(); typ != "none" {
				t.Errorf("%s still holds entries (%s)", key, typ)
			}
		}
		if g := must(t, try(e.m.Get(ctx, good.ID))); g.Status != StatusRunning {
			t.Fatalf("the due timer was not resumed: %s", g.Status)
		}
		// The next tick has nothing to do.
		if rep := eng.TickAt(tctx, now); rep.Dropped != 0 || rep.Errors != 0 {
			t.Fatalf("second tick %+v", rep)
		}
		// With a batch of one, the same data does not stall the tick either.
		for i := 0; i < 2*n; i++ {
			e.client.SAdd(ctx, k.cancelWait(0), bad.ID.String())
			f := e.flowInShard(t, 0)
			must(t, try(e.m.Cancel(ctx, f.ID)))
			e.client.SAdd(ctx, k.cancelWait(0), f.ID.String())
		}
		hook.n.Store(0)
		one := NewWaitEngine(NewManager(e.reopenStore(c)), WithLogger(quietLogger()), WithTickBatch(1))
		rep = one.TickAt(tctx, now)
		if tctx.Err() != nil || rep.Dropped != 2*n+1 {
			t.Fatalf("batch of one: %+v after %d commands", rep, hook.n.Load())
		}
	}, WithShards(2))
}

// TestTickWorksAroundAWrongTypedIndex: an index key of the wrong type
// (written by hand) is reported on every tick, the other shards are
// still worked on (the old tick gave up the whole round), and the tick
// drops no entry of the broken shard: its scripts fail there whatever
// the flow, so the flows are not to blame.
func TestTickWorksAroundAWrongTypedIndex(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx, k := e.ctx, e.store.keys
		now := e.clock.Now()
		f0, f1 := e.flowInShard(t, 0), e.flowInShard(t, 1)
		must(t, try(e.m.SetWaiting(ctx, f0.ID, WaitManual())))
		must(t, try(e.m.RequestCancel(ctx, f0.ID)))
		must(t, try(e.m.SetWaiting(ctx, f1.ID, WaitTimer(now))))
		if err := e.client.Set(ctx, k.timers(0), "not a zset", 0).Err(); err != nil {
			t.Fatal(err)
		}
		rep := e.engine().TickAt(ctx, now)
		if rep.Resumed != 1 || rep.Cancelled != 0 || rep.Dropped != 0 || rep.Err == nil || !strings.Contains(rep.Err.Error(), "timers") {
			t.Fatalf("report %+v (%v)", rep, rep.Err)
		}
		if !e.client.SIsMember(ctx, k.cancelWait(0), f0.ID.String()).Val() {
			t.Fatal("the broken shard's cancel entry was dropped")
		}
		// Once the key is fixed, the cancel goes through.
		e.client.Del(ctx, k.timers(0))
		if rep := e.engine().TickAt(ctx, now); rep.Cancelled != 1 || rep.Errors != 0 {
			t.Fatalf("after the fix: %+v", rep)
		}
	}, WithShards(2))
}
