package taskflow

import (
	"context"
	"fmt"
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
