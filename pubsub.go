package taskflow

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

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

// masterWatch follows the server a failover client (redis.NewFailoverClient)
// dials: go-redis asks the Sentinels for the master on every dial, and
// after a switch it closes its command connections, so the next dial
// reaches the new master; a subscription on an old master that stays up
// is not closed. A dial to another address than the last one is a
// master change: changed() fires, and Claim's subscriptions subscribe
// again (claim.go). It sends no command of its own.
type masterWatch struct {
	mu      sync.Mutex
	addr    string
	epoch   uint64
	changed chan struct{} // closed (and replaced) on a change
}

// watchMaster hooks the dials of a failover client; nil for any other
// client (a single server's address does not change; a Cluster client
// follows its nodes' subscriptions itself).
func watchMaster(client redis.UniversalClient) *masterWatch {
	c, ok := client.(*redis.Client)
	if !ok || c.Options().Addr != "FailoverClient" {
		return nil
	}
	w := &masterWatch{changed: make(chan struct{})}
	c.AddHook(w)
	return w
}

// current returns the change count and a channel closed at the next
// change.
func (w *masterWatch) current() (uint64, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.epoch, w.changed
}

func (w *masterWatch) dialed(addr string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if addr == w.addr {
		return
	}
	first := w.addr == ""
	w.addr = addr
	if first {
		return
	}
	w.epoch++
	close(w.changed)
	w.changed = make(chan struct{})
}

// DialHook notes where each new connection goes (redis.Hook).
func (w *masterWatch) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err == nil && conn != nil {
			w.dialed(conn.RemoteAddr().String())
		}
		return conn, err
	}
}

// ProcessHook passes commands through (redis.Hook).
func (w *masterWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

// ProcessPipelineHook passes pipelines through (redis.Hook).
func (w *masterWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
