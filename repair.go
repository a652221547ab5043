package taskflow

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Repairs (Verify WithRepair): each runs in a script that changes
// nothing when the flow moved on since it was read (verify_live.go says
// why that is safe beside live workers).

// dropEntry removes one member from an index key of whatever type.
func (s *RedisStore) dropEntry(ctx context.Context, key, member string) error {
	typ, err := s.client.Type(ctx, key).Result()
	if err == nil {
		switch typ {
		case "zset":
			err = s.client.ZRem(ctx, key, member).Err()
		case "set":
			err = s.client.SRem(ctx, key, member).Err()
		case "hash":
			err = s.client.HDel(ctx, key, member).Err()
		}
	}
	if err != nil {
		return fmt.Errorf("taskflow: repair: %w", err)
	}
	return nil
}

// repair fixes the confirmed problems of one shard.
func (s *RedisStore) repair(ctx context.Context, shard int, found []Problem) error {
	reindex := map[uuid.UUID]*reindexFix{}
	reindexed := map[uuid.UUID][]int{} // the problems each reindex repairs
	orphans := map[uuid.UUID][]string{}
	for i := range found {
		p := &found[i]
		id, err := uuid.Parse(p.FlowID)
		switch {
		case p.Kind == ProblemUnknownKey || p.Kind == ProblemBadFlow || p.Kind == ProblemBadWait ||
			p.Kind == ProblemBadEvent || p.Kind == ProblemEventRevision || p.Kind == ProblemEventsMissing ||
			p.Kind == ProblemWaitMissing || p.Kind == ProblemWaitExtra || p.Kind == ProblemStepMissing ||
			p.Kind == ProblemWrongType || p.Kind == ProblemUnreadableFlow || p.Kind == ProblemBadIdempotency ||
			p.Kind == ProblemBadAttempts:
			// Records are not rewritten: these need a person.
			continue
		case p.Kind == ProblemControllerUnlisted:
			if err := s.client.SAdd(ctx, p.Key, p.Member).Err(); err != nil {
				return fmt.Errorf("taskflow: repair: %w", err)
			}
		case p.Kind == ProblemStaleIndexEntry && (err != nil || s.keys.shardOf(id) != shard):
			// The entry names no flow of this shard: drop it where it is.
			if err := s.dropEntry(ctx, p.Key, p.Member); err != nil {
				return err
			}
		case err != nil:
			continue
		case p.Kind == ProblemOrphanKey:
			orphans[id] = append(orphans[id], p.Key)
		case p.Kind == ProblemStepUnindexed:
			// One script: a prune between a read and a write would
			// leave a step set of a flow that is gone.
			run := p.Key[len(s.keys.step(id, "")):]
			keys := []string{s.keys.flow(id), s.keys.steps(id), p.Key}
			if _, err := s.run(ctx, s.scripts.indexStep, id, keys, run); err != nil {
				return fmt.Errorf("taskflow: repair: %w", err)
			}
		default:
			f := reindex[id]
			if f == nil {
				f = &reindexFix{}
				reindex[id] = f
			}
			reindexed[id] = append(reindexed[id], i)
			if strings.HasPrefix(p.Key, s.keys.tag(shard)+":owner:") {
				f.ownerKey = p.Key
			}
			if strings.HasPrefix(p.Key, s.keys.tag(shard)+":ready:") && p.Kind == ProblemStaleIndexEntry {
				f.readies = append(f.readies, p.Key)
			}
			if p.Key == s.keys.corr(shard) && p.Kind == ProblemStaleIndexEntry {
				f.corrs = append(f.corrs, p.Member)
			}
		}
		p.Repaired = true
	}
	left, err := s.reindexLive(ctx, shard, reindex)
	if err != nil {
		return err
	}
	for id := range left {
		for _, i := range reindexed[id] {
			found[i].Repaired = false
			found[i].Detail += " (not repaired: the flow kept changing; run the repair again)"
		}
	}
	var calls []scriptCall
	for id, keys := range orphans {
		head := []string{s.keys.flow(id), s.keys.earlyFlow(id), s.keys.earlyIndex(s.keys.shardOf(id))}
		var rest []string
		for _, k := range keys {
			if k != head[1] {
				rest = append(rest, k)
			}
		}
		calls = append(calls, scriptCall{s.scripts.deleteOrphans, append(head, rest...), nil})
	}
	_, errs := s.runPipelined(ctx, calls)
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("taskflow: repair: %w", err)
		}
	}
	return nil
}

// reindexFix is what a repair knows of one flow to reindex.
type reindexFix struct {
	ownerKey string
	readies  []string
	corrs    []string
}

// reindexLive rebuilds the index entries of the flows in fixes from their
// records. Each flow is read, and its entries rewritten only if it is
// still at the revision read; a flow that changed is read again, up to
// three times. It returns the flows it could not settle.
func (s *RedisStore) reindexLive(ctx context.Context, shard int, fixes map[uuid.UUID]*reindexFix) (map[uuid.UUID]bool, error) {
	pending := make([]uuid.UUID, 0, len(fixes))
	for id := range fixes {
		pending = append(pending, id)
	}
	for attempt := 0; attempt < 3 && len(pending) > 0; attempt++ {
		pipe := s.client.Pipeline()
		reads := make([]*redis.MapStringStringCmd, len(pending))
		for i, id := range pending {
			reads[i] = pipe.HGetAll(ctx, s.keys.flow(id))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("taskflow: repair: %w", err)
		}
		calls := make([]scriptCall, len(pending))
		for i, id := range pending {
			f, fields := fixes[id], reads[i].Val()
			ownerKey := f.ownerKey
			if owner, ok := fields["owner"]; ok && ownerKey == "" {
				ownerKey = s.keys.owner(shard, owner)
			}
			if ownerKey == "" {
				ownerKey = s.keys.owner(shard, "")
			}
			timerMs, corr, _ := s.expectedWait(id, fields)
			keys := append(s.keys.flowKeys(id, ""), ownerKey)
			keys = append(keys, f.readies...)
			args := []any{id.String(), timerMs, corr, len(f.readies), fields["rev"]}
			for _, c := range f.corrs {
				args = append(args, c)
			}
			calls[i] = scriptCall{s.scripts.reindexFlow, keys, args}
		}
		vals, errs := s.runPipelined(ctx, calls)
		var again []uuid.UUID
		for i, err := range errs {
			if err != nil {
				return nil, fmt.Errorf("taskflow: repair: %w", err)
			}
			if v, _ := vals[i].(int64); v == -1 {
				again = append(again, pending[i])
			}
		}
		pending = again
	}
	left := map[uuid.UUID]bool{}
	for _, id := range pending {
		left[id] = true
	}
	return left, nil
}
