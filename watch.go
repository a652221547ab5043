package taskflow

import (
	"context"
	"strings"
	"sync"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Watching: a live stream of audit events, built on each shard's watch
// channel (pubsub.go).

// Watch streams the audit events of one flow as they are appended, until
// ctx ends (then the channel is closed). It is a live view built on the
// shard's watch channel, with no polling: events appended while no one
// watches are in ListEvents, not here.
func (m *Manager) Watch(ctx context.Context, flowID uuid.UUID) (<-chan *FlowEvent, error) {
	return m.watch(ctx, []int{m.store.keys.shardOf(flowID)}, func(id uuid.UUID) bool { return id == flowID })
}

// WatchAll streams the audit events of every flow of the flow space, as
// Watch does for one.
func (m *Manager) WatchAll(ctx context.Context) (<-chan *FlowEvent, error) {
	shards := make([]int, m.store.keys.shards)
	for i := range shards {
		shards[i] = i
	}
	return m.watch(ctx, shards, func(uuid.UUID) bool { return true })
}

func (m *Manager) watch(ctx context.Context, shards []int, keep func(uuid.UUID) bool) (<-chan *FlowEvent, error) {
	if err := m.store.checkLayout(ctx); err != nil {
		return nil, err
	}
	channels := make([]string, len(shards))
	for i, sh := range shards {
		channels[i] = m.store.keys.watch(sh)
	}
	// Mark the shards watched before subscribing: from then on every
	// event is announced (pubsub.go markWatched), so none is missed.
	if err := m.store.markWatched(ctx, shards); err != nil {
		return nil, err
	}
	subs, err := m.store.subscribe(ctx, channels)
	if err != nil {
		return nil, err
	}
	out := make(chan *FlowEvent, 64)
	var wg sync.WaitGroup
	for _, ps := range subs {
		wg.Add(1)
		go func(ps *redis.PubSub) {
			defer wg.Done()
			ch := ps.Channel()
			for {
				select {
				case <-ctx.Done():
					return
				case msg, ok := <-ch:
					if !ok {
						return
					}
					ev := parseWatchMessage(msg.Payload)
					if ev == nil || !keep(ev.FlowID) {
						continue
					}
					select {
					case out <- ev:
					case <-ctx.Done():
						return
					}
				}
			}
		}(ps)
	}
	go func() {
		<-ctx.Done()
		for _, ps := range subs {
			_ = ps.Close()
		}
		wg.Wait()
		close(out)
	}()
	return out, nil
}

// parseWatchMessage reads "<flow id> <event id> <entry>".
func parseWatchMessage(p string) *FlowEvent {
	idStr, numbered, ok := strings.Cut(p, " ")
	if !ok {
		return nil
	}
	id, err := uuid.Parse(idStr)
	if err != nil {
		return nil
	}
	ev, err := decodeNumbered(id, numbered)
	if err != nil {
		return nil
	}
	return ev
}
