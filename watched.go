package taskflow

import (
	"context"
	"fmt"
	"time"
)

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
