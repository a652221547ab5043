package taskflow

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

func TestWatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx, cancel := context.WithCancel(e.ctx)
		f := must(t, try(e.m.CreateMirrored(e.ctx, fleetInput("ctl/w"))))
		other := must(t, try(e.m.CreateMirrored(e.ctx, fleetInput("ctl/w"))))
		ch := must(t, try(e.m.Watch(ctx, f.ID)))
		all := must(t, try(e.m.WatchAll(ctx)))
		must(t, try(e.m.UpdateState(e.ctx, other.ID, map[string]int{"x": 1}, "")))
		must(t, try(e.m.UpdateState(e.ctx, f.ID, map[string]int{"x": 1}, "")))
		must(t, try(e.m.SetWaiting(e.ctx, f.ID, WaitManual())))
		want := []EventKind{EventStateUpdated, EventWaiting}
		for i, k := range want {
			select {
			case ev := <-ch:
				if ev.FlowID != f.ID || ev.Kind != k {
					t.Fatalf("event %d: %+v, want %s of %s", i, ev, k, f.ID)
				}
			case <-time.After(3 * time.Second):
				t.Fatalf("no event %d", i)
			}
		}
		seen := map[uuid.UUID]int{}
		for i := 0; i < 3; i++ {
			select {
			case ev := <-all:
				seen[ev.FlowID]++
			case <-time.After(3 * time.Second):
				t.Fatalf("WatchAll delivered %d of 3", i)
			}
		}
		if seen[f.ID] != 2 || seen[other.ID] != 1 {
			t.Fatalf("WatchAll saw %v", seen)
		}
		cancel()
		for range ch {
		}
		for range all {
		}
	})
}

// subscribers counts the subscriptions to a shard's watch channel: a
// channel's on a server, a sharded channel's on its slot's master.
func subscribers(t *testing.T, e *env, shard int) int64 {
	t.Helper()
	ch := e.store.keys.watch(shard)
	if cc, ok := e.client.(*redis.ClusterClient); ok {
		node, err := cc.MasterForKey(e.ctx, ch)
		if err != nil {
			t.Fatal(err)
		}
		return must(t, try(node.PubSubShardNumSub(e.ctx, ch).Result()))[ch]
	}
	return must(t, try(e.client.PubSubNumSub(e.ctx, ch).Result()))[ch]
}

// TestWatchesShareOneSubscriptionPerShard: many watches of one manager
// hold one subscription per shard between them (not one each), each
// still gets its own flow's events and no other's, a flow that does not
// exist is refused, and Close ends them all.
func TestWatchesShareOneSubscriptionPerShard(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		const flows, per = 6, 20
		var ids []uuid.UUID
		watches := map[uuid.UUID][]<-chan *FlowEvent{}
		for range flows {
			f := must(t, try(e.m.CreateMirrored(e.ctx, fleetInput("ctl/share"))))
			ids = append(ids, f.ID)
			for range per {
				watches[f.ID] = append(watches[f.ID], must(t, try(e.m.Watch(ctx, f.ID))))
			}
		}
		all := []<-chan *FlowEvent{must(t, try(e.m.WatchAll(ctx))), must(t, try(e.m.WatchAll(ctx)))}
		for sh := range e.store.keys.shards {
			if n := subscribers(t, e, sh); n != 1 {
				t.Errorf("shard %d: %d subscriptions for %d watches, want 1", sh, n, flows*per+len(all))
			}
		}
		if _, err := e.m.Watch(ctx, uuid.New()); !errors.Is(err, ErrNotFound) {
			t.Errorf("watching a flow that does not exist: %v, want ErrNotFound", err)
		}
		for _, id := range ids {
			must(t, try(e.m.UpdateState(e.ctx, id, map[string]int{"x": 1}, "")))
		}
		// A watch that joins a shard's subscription may also get an event
		// appended just before it (still on its way to the process): the
		// creates here.
		next := func(ch <-chan *FlowEvent) *FlowEvent {
			for {
				select {
				case ev, ok := <-ch:
					if !ok {
						t.Fatal("a watch ended early")
					}
					if ev.Kind == EventCreated || ev.Kind == EventStarted {
						continue
					}
					return ev
				case <-time.After(10 * time.Second):
					t.Fatal("no event within 10 s")
				}
			}
		}
		for id, chs := range watches {
			for _, ch := range chs {
				if ev := next(ch); ev.FlowID != id || ev.Kind != EventStateUpdated {
					t.Fatalf("the watch of %s got %s of %s", id, ev.Kind, ev.FlowID)
				}
			}
		}
		for _, ch := range all {
			seen := map[uuid.UUID]bool{}
			for range flows {
				seen[next(ch).FlowID] = true
			}
			if len(seen) != flows {
				t.Fatalf("WatchAll saw %d flows of %d", len(seen), flows)
			}
		}
		// Close ends every watch: each channel closes, with nothing
		// more in it (no flow changed since).
		if err := e.m.Close(); err != nil {
			t.Fatal(err)
		}
		for _, chs := range append(slices.Collect(maps.Values(watches)), all) {
			for _, ch := range chs {
				select {
				case ev, ok := <-ch:
					if ok {
						t.Fatalf("after Close: %+v", ev)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("a watch outlived Close")
				}
			}
		}
	})
}

// TestWatchBacklog: a consumer that falls watchBacklog events behind gets
// what was held for it, then its channel closes; it never blocks the
// shard's reader (push returns at once).
func TestWatchBacklog(t *testing.T) {
	w := &watcher{out: make(chan *FlowEvent), wake: make(chan struct{}, 1)}
	id := uuid.New()
	for i := range watchBacklog + 5 {
		w.push(&FlowEvent{FlowID: id, ID: strconv.Itoa(i)})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.pump(context.Background())
		close(w.out)
	}()
	n := 0
	for ev := range w.out {
		if ev.ID != strconv.Itoa(n) {
			t.Fatalf("event %d is %s", n, ev.ID)
		}
		n++
	}
	<-done
	if n != watchBacklog {
		t.Fatalf("got %d events, want the %d held", n, watchBacklog)
	}
}

// TestUnwatchedShardsPublishNothing: a mutation announces its event on
// the shard's watch channel only while the shard is marked watched (as
// Watch marks it, for at most watchedTTL after its last refresh).
func TestUnwatchedShardsPublishNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		f := must(t, try(e.m.CreateMirrored(e.ctx, fleetInput("ctl/quiet"))))
		shard := e.store.keys.shardOf(f.ID)
		subs, err := e.store.subscribe(ctx, []string{e.store.keys.watch(shard)})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			for _, ps := range subs {
				_ = ps.Close()
			}
		}()
		msgs := subs[0].Channel()
		must(t, try(e.m.UpdateState(e.ctx, f.ID, map[string]int{"x": 1}, "")))
		select {
		case m := <-msgs:
			t.Fatalf("an unwatched shard announced %q", m.Payload)
		case <-time.After(300 * time.Millisecond):
		}
		// Watch marks the shard; the mark expires unless refreshed.
		if _, err := e.m.Watch(ctx, f.ID); err != nil {
			t.Fatal(err)
		}
		ttl, err := e.client.PTTL(e.ctx, e.store.keys.watched(shard)).Result()
		if err != nil || ttl <= 0 || ttl > watchedTTL {
			t.Fatalf("watched mark ttl %v, %v", ttl, err)
		}
		must(t, try(e.m.UpdateState(e.ctx, f.ID, map[string]int{"x": 2}, "")))
		select {
		case m := <-msgs:
			if !strings.HasPrefix(m.Payload, f.ID.String()+" ") {
				t.Fatalf("announced %q", m.Payload)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("a watched shard announced nothing")
		}
	})
}
