package taskflow

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Watching: a live stream of audit events, built on each shard's watch
// channel (pubsub.go). The watches of a Manager share one subscription
// per shard (watchHub): a thousand watches of one process cost Redis one
// connection per shard they touch, not a thousand.

// watchBacklog is how many events a watch holds for a consumer that does
// not keep up. A consumer that falls further behind loses its watch: the
// channel closes (after the events it holds), as when ctx ends, so that
// one slow consumer never holds up the others or the process's memory.
// Its events stay in ListEvents.
const watchBacklog = 10_000

// Watch streams the audit events of one flow as they are appended, until
// ctx ends (then the channel is closed). It is a live view built on the
// shard's watch channel, with no polling: events appended while no one
// watches are in ListEvents, not here; a watch that joins a shard's
// running subscription may also get an event appended just before it
// began (compare event ids with what was read). A flow that does not
// exist is refused with an error wrapping ErrNotFound.
//
// Every Watch and WatchAll of a Manager shares one subscription per shard
// (one Redis connection each), opened by the first watch of the shard
// and closed with its last. The channel also closes when the consumer
// falls 10,000 events behind, and when the Manager is closed.
func (m *Manager) Watch(ctx context.Context, flowID uuid.UUID) (<-chan *FlowEvent, error) {
	if err := m.store.checkLayout(ctx); err != nil {
		return nil, err
	}
	n, err := m.store.client.Exists(ctx, m.store.keys.flow(flowID)).Result()
	if err != nil {
		return nil, fmt.Errorf("taskflow: watch %s: %w", flowID, err)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: flow %s", ErrNotFound, flowID)
	}
	return m.watch(ctx, []int{m.store.keys.shardOf(flowID)}, flowID)
}

// WatchAll streams the audit events of every flow of the flow space, as
// Watch does for one.
func (m *Manager) WatchAll(ctx context.Context) (<-chan *FlowEvent, error) {
	if err := m.store.checkLayout(ctx); err != nil {
		return nil, err
	}
	shards := make([]int, m.store.keys.shards)
	for i := range shards {
		shards[i] = i
	}
	return m.watch(ctx, shards, uuid.Nil)
}

// watch joins the shards' shared subscriptions with a watcher of flow
// (uuid.Nil: every flow) and pumps its events out until ctx ends.
func (m *Manager) watch(ctx context.Context, shards []int, flow uuid.UUID) (<-chan *FlowEvent, error) {
	h := &m.watches
	w := &watcher{flow: flow, out: make(chan *FlowEvent), wake: make(chan struct{}, 1)}
	if err := h.join(ctx, m.store, shards, w); err != nil {
		return nil, err
	}
	go func() {
		defer func() {
			// Leave the subscriptions before closing the channel: a
			// caller that drains it may close the client next.
			h.leave(w, shards)
			close(w.out)
		}()
		w.pump(ctx)
	}()
	return w.out, nil
}

// watcher is one Watch or WatchAll: the events the shards hand it wait in
// queue until its consumer takes them.
type watcher struct {
	flow uuid.UUID // uuid.Nil: every flow
	out  chan *FlowEvent
	wake chan struct{} // signalled when queue grows or ended is set

	mu    sync.Mutex
	queue []*FlowEvent
	ended bool // fell watchBacklog behind, or the manager was closed
}

// push queues an event, or ends the watcher when it is watchBacklog
// behind. It never blocks: it is called by the shard's reader.
func (w *watcher) push(ev *FlowEvent) {
	w.mu.Lock()
	switch {
	case w.ended:
	case len(w.queue) >= watchBacklog:
		w.ended = true
	default:
		e := *ev // each watcher its own copy
		w.queue = append(w.queue, &e)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// end ends the watcher once it has handed out what it holds.
func (w *watcher) end() {
	w.mu.Lock()
	w.ended = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// pump hands the queued events to the consumer until ctx ends or the
// watcher ends.
func (w *watcher) pump(ctx context.Context) {
	for {
		w.mu.Lock()
		batch, ended := w.queue, w.ended
		w.queue = nil
		w.mu.Unlock()
		for _, ev := range batch {
			select {
			case w.out <- ev:
			case <-ctx.Done():
				return
			}
		}
		if ended && len(batch) == 0 {
			return
		}
		if len(batch) > 0 {
			continue // more may have come meanwhile
		}
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		}
	}
}

// watchHub holds a Manager's shared subscriptions to its shards' watch
// channels. The zero value is ready to use.
type watchHub struct {
	mu     sync.Mutex
	shards map[int]*shardWatch
}

// shardWatch is the one subscription to a shard's watch channel and the
// watchers it feeds.
type shardWatch struct {
	ready  chan struct{} // closed once subscribed, or failed (err)
	err    error
	cancel context.CancelFunc // ends the subscription and the watched mark
	ps     *redis.PubSub

	all    map[*watcher]bool               // WatchAll's
	byFlow map[uuid.UUID]map[*watcher]bool // Watch's, by flow
	n      int
}

func (sw *shardWatch) add(w *watcher) {
	if w.flow == uuid.Nil {
		sw.all[w] = true
	} else {
		if sw.byFlow[w.flow] == nil {
			sw.byFlow[w.flow] = map[*watcher]bool{}
		}
		sw.byFlow[w.flow][w] = true
	}
	sw.n++
}

// remove takes w out, reporting whether it was there.
func (sw *shardWatch) remove(w *watcher) bool {
	if w.flow == uuid.Nil {
		if !sw.all[w] {
			return false
		}
		delete(sw.all, w)
	} else {
		set := sw.byFlow[w.flow]
		if !set[w] {
			return false
		}
		delete(set, w)
		if len(set) == 0 {
			delete(sw.byFlow, w.flow)
		}
	}
	sw.n--
	return true
}

// join adds w to the subscription of each shard, opening those that are
// not open yet, and returns once every one is subscribed: from then on
// no event of these shards is missed.
func (h *watchHub) join(ctx context.Context, s *RedisStore, shards []int, w *watcher) error {
	h.mu.Lock()
	if h.shards == nil {
		h.shards = map[int]*shardWatch{}
	}
	subs := make([]*shardWatch, len(shards))
	for i, sh := range shards {
		sw := h.shards[sh]
		if sw == nil {
			sctx, cancel := context.WithCancel(context.Background())
			sw = &shardWatch{ready: make(chan struct{}), cancel: cancel, all: map[*watcher]bool{}, byFlow: map[uuid.UUID]map[*watcher]bool{}}
			h.shards[sh] = sw
			go h.open(sctx, s, sh, sw)
		}
		sw.add(w)
		subs[i] = sw
	}
	h.mu.Unlock()
	for _, sw := range subs {
		select {
		case <-sw.ready:
		case <-ctx.Done():
			h.leave(w, shards)
			return ctx.Err()
		}
		if sw.err != nil {
			h.leave(w, shards)
			return sw.err
		}
	}
	return nil
}

// open marks the shard watched, subscribes to its channel and starts
// handing its messages to the shard's watchers. The mark comes first:
// from then on every event is announced (pubsub.go markWatched), so none
// published after the subscription is missed.
func (h *watchHub) open(ctx context.Context, s *RedisStore, sh int, sw *shardWatch) {
	var ps *redis.PubSub
	err := s.markWatched(ctx, []int{sh})
	if err == nil {
		var subs []*redis.PubSub
		if subs, err = s.subscribe(ctx, []string{s.keys.watch(sh)}); err == nil {
			ps = subs[0]
		}
	}
	h.mu.Lock()
	if err == nil && ctx.Err() != nil { // every watcher left meanwhile
		_ = ps.Close()
		err, ps = ctx.Err(), nil
	}
	sw.err, sw.ps = err, ps
	if err != nil {
		sw.cancel() // stops the mark's refresher
		if h.shards[sh] == sw {
			delete(h.shards, sh) // the next watch tries again
		}
	}
	close(sw.ready)
	h.mu.Unlock()
	if ps != nil {
		go h.dispatch(sw, ps.Channel(redis.WithChannelHealthCheckInterval(hubHealthCheck)))
	}
}

// dispatch hands each message of a shard's channel to the watchers of
// its flow and to the shard's WatchAll watchers.
func (h *watchHub) dispatch(sw *shardWatch, ch <-chan *redis.Message) {
	for msg := range ch {
		ev := parseWatchMessage(msg.Payload)
		if ev == nil {
			continue
		}
		h.mu.Lock()
		for w := range sw.all {
			w.push(ev)
		}
		for w := range sw.byFlow[ev.FlowID] {
			w.push(ev)
		}
		h.mu.Unlock()
	}
}

// leave takes w out of the shards' subscriptions and closes each one it
// was the last watcher of.
func (h *watchHub) leave(w *watcher, shards []int) {
	var closing []*redis.PubSub
	h.mu.Lock()
	for _, sh := range shards {
		sw := h.shards[sh]
		if sw == nil || !sw.remove(w) || sw.n > 0 {
			continue
		}
		delete(h.shards, sh)
		sw.cancel() // under the lock: an open still under way sees it
		if sw.ps != nil {
			closing = append(closing, sw.ps)
		}
	}
	h.mu.Unlock()
	for _, ps := range closing {
		_ = ps.Close()
	}
}

// close ends every subscription and every watcher (Manager.Close).
func (h *watchHub) close() {
	var closing []*redis.PubSub
	h.mu.Lock()
	for sh, sw := range h.shards {
		delete(h.shards, sh)
		sw.cancel()
		if sw.ps != nil {
			closing = append(closing, sw.ps)
		}
		for w := range sw.all {
			w.end()
		}
		for _, set := range sw.byFlow {
			for w := range set {
				w.end()
			}
		}
	}
	h.mu.Unlock()
	for _, ps := range closing {
		_ = ps.Close()
	}
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

// Pub/sub plumbing shared by Claim (ready announcements) and Watch (audit
// entries): subscriptions, and the mark that makes a shard's mutations
// announce their events.

// subscribe subscribes to channels and waits for the confirmations, so
// nothing published afterwards is missed. On a Cluster each shard's
// channel is a sharded channel on its slot's node (one connection each).
func (s *RedisStore) subscribe(ctx context.Context, channels []string) ([]*redis.PubSub, error) {
	var subs []*redis.PubSub
	fail := func(err error) ([]*redis.PubSub, error) {
		for _, ps := range subs {
			_ = ps.Close()
		}
		return nil, fmt.Errorf("taskflow: subscribe: %w", err)
	}
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		for _, ch := range channels {
			ps := cc.SSubscribe(ctx, ch)
			subs = append(subs, ps)
			if _, err := ps.Receive(ctx); err != nil {
				return fail(err)
			}
		}
		return subs, nil
	}
	ps := s.client.Subscribe(ctx, channels...)
	subs = append(subs, ps)
	for range channels {
		if _, err := ps.Receive(ctx); err != nil {
			return fail(err)
		}
	}
	return subs, nil
}

// watchedTTL is how long a shard stays marked watched after its
// watcher's last refresh; a watcher refreshes the mark every third of it.
const watchedTTL = 30 * time.Second

// markWatched marks shards as watched ('<base>:watched', watchedTTL) and
// keeps them marked until ctx ends. A mutation announces its event on the
// shard's watch channel only while the shard is marked
// (lua/include/events.lua), so a flow space nobody watches spends no
// PUBLISH per mutation, and replicates no message. A refresh that fails
// is tried again every second: the mark lapses only after 20 s without
// Redis, when the subscription itself is broken.
func (s *RedisStore) markWatched(ctx context.Context, shards []int) error {
	mark := func(ctx context.Context) error {
		pipe := s.client.Pipeline()
		for _, sh := range shards {
			pipe.Set(ctx, s.keys.watched(sh), "1", watchedTTL)
		}
		_, err := pipe.Exec(ctx)
		return err
	}
	if err := mark(ctx); err != nil {
		return fmt.Errorf("taskflow: marking shards watched: %w", err)
	}
	go func() {
		next := watchedTTL / 3
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(next):
			}
			next = watchedTTL / 3
			if mark(ctx) != nil {
				next = time.Second // try again soon: the mark must not lapse
			}
		}
	}()
	return nil
}
