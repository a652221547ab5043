package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// FillWaiting writes count waiting flows (timer waits a day ahead, owners
// spread over 1,000 sessions) into the flow space at prefix, with the
// library's default shard count, straight through pipelines: a million
// flows in about a minute. It first proves on the same server that the
// direct fill writes what the Manager writes (the fidelity check under
// the fill-* prefixes, deleted after). For benchmarks of other modules,
// such as the dashboard's first page.
func FillWaiting(ctx context.Context, c *redis.Client, prefix string, count int) error {
	if err := checkFillFidelity(ctx, c, "fill-check"); err != nil {
		return fmt.Errorf("bench: the direct fill no longer matches the library: %w", err)
	}
	now := time.Now()
	fw := waitFill{c: c, prefix: prefix, shards: defaultShards, owners: 1000, workers: 4, batch: 500}
	_, err := fw.fill(ctx, 0, count, now.Add(-time.Minute), now.Add(-time.Minute), func(i int) time.Time {
		return now.Add(24*time.Hour + time.Duration(i)*time.Millisecond)
	})
	return err
}
