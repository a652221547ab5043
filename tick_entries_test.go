package taskflow

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

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
