package taskflow

import (
	"context"
	"strings"
	"testing"
	"time"
)

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
