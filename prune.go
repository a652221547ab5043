package taskflow

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// pruneTerminalFlows deletes terminal flows whose last update is older than
// olderThan, with their state, steps, events, early events (kept for the
// flow: a flow made again with the same id does not take them) and index
// entries, and returns how many it deleted. It works shard by shard in batches of 100
// flows, and never touches a flow that is not terminal.
func (s *RedisStore) pruneTerminalFlows(ctx context.Context, olderThan time.Duration) (int, error) {
	if olderThan < 0 {
		return 0, fmt.Errorf("%w: negative retention %s", ErrInvalidData, olderThan)
	}
	now, _, _ := s.clock()
	cutoff := now.Add(-olderThan).UnixMilli()
	total := 0
	for shard := 0; shard < s.keys.shards; shard++ {
		for _, st := range allStatuses {
			if !st.IsTerminal() {
				continue
			}
			n, err := s.pruneIndex(ctx, shard, st, cutoff)
			total += n
			if err != nil {
				return total, err
			}
		}
	}
	return total, nil
}

const pruneBatch = 100

func (s *RedisStore) pruneIndex(ctx context.Context, shard int, st FlowStatus, cutoff int64) (int, error) {
	key := s.keys.status(shard, st)
	total := 0
	for {
		// Entered a terminal status before the cutoff implies last
		// updated before it: terminal flows are not updated any more.
		ids, err := s.client.ZRangeByScore(ctx, key, &redis.ZRangeBy{
			Min: "-inf", Max: "(" + strconv.FormatInt(cutoff, 10), Count: pruneBatch,
		}).Result()
		if err != nil {
			return total, fmt.Errorf("taskflow: prune: %w", err)
		}
		if len(ids) == 0 {
			return total, nil
		}
		n, dropped, err := s.pruneIDs(ctx, key, ids, cutoff)
		total += n
		if err != nil {
			return total, err
		}
		if n+dropped == 0 {
			// The whole batch refused (changing under us): leave it
			// for the next call rather than spin.
			return total, nil
		}
	}
}

// pruneIDs prunes the flows named by one batch of index entries of key.
// An entry whose flow is gone (or whose id is not a UUID) is dropped from
// the index and counted as progress, not as a pruned flow.
func (s *RedisStore) pruneIDs(ctx context.Context, key string, raw []string, cutoff int64) (pruned, dropped int, err error) {
	ids := make([]uuid.UUID, 0, len(raw))
	var stale []any
	for _, r := range raw {
		id, err := uuid.Parse(r)
		if err != nil {
			stale = append(stale, r)
			continue
		}
		ids = append(ids, id)
	}
	flows, err := s.getMany(ctx, ids)
	if err != nil {
		return 0, 0, err
	}
	found := make(map[uuid.UUID]bool, len(flows))
	for _, f := range flows {
		found[f.ID] = true
	}
	for _, id := range ids {
		if !found[id] {
			stale = append(stale, id.String())
		}
	}
	if len(stale) > 0 {
		if err := s.client.ZRem(ctx, key, stale...).Err(); err != nil {
			return 0, 0, fmt.Errorf("taskflow: prune: %w", err)
		}
	}
	pipe := s.client.Pipeline()
	stepCmds := make([]*redis.StringSliceCmd, len(flows))
	for i, f := range flows {
		stepCmds[i] = pipe.ZRange(ctx, s.keys.steps(f.ID), 0, -1)
	}
	if len(flows) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, len(stale), fmt.Errorf("taskflow: prune: %w", err)
		}
	}
	calls := make([]scriptCall, len(flows))
	for i, f := range flows {
		// Key 16 is the owner index even for a flow without an owner
		// (the script then leaves it alone), so the keys after it stay
		// where the script looks for them.
		keys := append(s.keys.flowKeys(f.ID, ""), s.keys.owner(s.keys.shardOf(f.ID), f.OwnerSessionKey))
		keys = s.keys.withEarlyFlow(keys, f.ID)
		runs := stepCmds[i].Val()
		for _, r := range runs {
			keys = append(keys, s.keys.step(f.ID, r))
		}
		calls[i] = scriptCall{s.scripts.pruneFlow, keys, []any{f.ID.String(), cutoff, len(runs)}}
	}
	vals, errs := s.runPipelined(ctx, calls)
	for i := range calls {
		if errs[i] != nil {
			return pruned, len(stale), fmt.Errorf("taskflow: prune %s: %w", flows[i].ID, errs[i])
		}
		if v, _ := vals[i].(int64); v == 1 {
			pruned++
		}
	}
	return pruned, len(stale), nil
}
