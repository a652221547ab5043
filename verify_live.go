package taskflow

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Verify and its repairs run beside live traffic. What makes them safe:
//
//   - a problem is reported only if a re-check still sees it, and every
//     re-check reads everything it compares in one atomic step: a flow
//     with its index entries (verify_flow.lua), a stale entry with the
//     flow it names (verify_entry.lua), an orphan key or a step with
//     the flow record (MULTI, one slot);
//   - a repair that rebuilds a flow's index entries computes them from
//     one read of the flow and applies them only if the flow's revision
//     is still the one read (reindex_flow.lua), else reads it again.

// confirmEntries re-checks stale_index_entry problems: each still holds
// only if its entry is still in its index and, read in the same step,
// the flow it names still does not match it (an entry that names no flow
// of the index's shard never does).
func (s *RedisStore) confirmEntries(ctx context.Context, ps []*Problem) ([]bool, error) {
	calls := make([]scriptCall, len(ps))
	ids := make([]uuid.UUID, len(ps))
	for i, p := range ps {
		keys := []string{p.Key}
		if id, err := uuid.Parse(p.FlowID); err == nil {
			ids[i] = id
			sh := s.keys.shardOf(id)
			if strings.HasPrefix(p.Key, s.keys.tag(sh)+":") {
				keys = append(keys, s.keys.flow(id), s.keys.leases(sh))
			}
		}
		calls[i] = scriptCall{s.scripts.verifyEntry, keys, []any{p.Member, p.FlowID}}
	}
	vals, errs := s.runPipelined(ctx, calls)
	out := make([]bool, len(ps))
	for i, p := range ps {
		if err := errs[i]; err != nil {
			var rerr redis.Error
			if errors.As(err, &rerr) { // an unreadable flow: keep what was found
				out[i] = true
				continue
			}
			return nil, fmt.Errorf("taskflow: verify: %w", err)
		}
		arr, _ := vals[i].([]any)
		if len(arr) < 3 {
			return nil, fmt.Errorf("taskflow: verify: unexpected reply %T", vals[i])
		}
		if present, _ := arr[0].(int64); present != 1 {
			continue // gone meanwhile
		}
		fields := pairsToMap(arr[1])
		if len(fields) == 0 {
			out[i] = true // names no flow, or one of another shard
			continue
		}
		lease, _ := arr[2].(string)
		out[i] = s.entryStillStale(*p, &flowSnap{id: ids[i], fields: fields, lease: lease})
	}
	return out, nil
}

// confirmKeyed re-checks orphan_key and step problems, each with one
// MULTI over its flow's slot: an orphan key holds while the key exists
// and the flow does not; a step problem while the flow exists and the
// step's record and its entry in the step set still disagree.
func (s *RedisStore) confirmKeyed(ctx context.Context, ps []*Problem) ([]bool, error) {
	type check struct{ flow, key, member *redis.IntCmd }
	checks := make([]check, len(ps))
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i, pr := range ps {
			id, err := uuid.Parse(pr.FlowID)
			if err != nil {
				continue
			}
			checks[i].flow = p.Exists(ctx, s.keys.flow(id))
			checks[i].key = p.Exists(ctx, pr.Key)
			if pr.Kind != "orphan_key" {
				run := strings.TrimPrefix(pr.Key, s.keys.step(id, ""))
				checks[i].member = p.ZRank(ctx, s.keys.steps(id), run)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("taskflow: verify: %w", err)
	}
	out := make([]bool, len(ps))
	for i, pr := range ps {
		c := checks[i]
		if c.flow == nil {
			out[i] = true
			continue
		}
		flow, key := c.flow.Val() == 1, c.key.Val() == 1
		switch pr.Kind {
		case "orphan_key":
			out[i] = !flow && key
		case "step_missing":
			out[i] = flow && !key && c.member.Err() == nil
		case "step_unindexed":
			out[i] = flow && key && errors.Is(c.member.Err(), redis.Nil)
		}
	}
	return out, nil
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
