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
			if pr.Kind != ProblemOrphanKey {
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
		case ProblemOrphanKey:
			out[i] = !flow && key
		case ProblemStepMissing:
			out[i] = flow && !key && c.member.Err() == nil
		case ProblemStepUnindexed:
			out[i] = flow && key && errors.Is(c.member.Err(), redis.Nil)
		}
	}
	return out, nil
}

// confirmProblems re-checks the problems found and keeps the ones still
// there: Verify runs beside live traffic, and each re-check reads the
// flow together with what it is compared with (see verify_live.go).
func (s *RedisStore) confirmProblems(ctx context.Context, found []Problem) ([]Problem, error) {
	if len(found) == 0 {
		return found, nil
	}
	holds := make([]bool, len(found))
	var entries, keyed []*Problem
	var entryAt, keyedAt []int
	var ids []uuid.UUID
	seen := map[uuid.UUID]bool{}
	for i := range found {
		p := &found[i]
		switch p.Kind {
		case ProblemStaleIndexEntry:
			entries, entryAt = append(entries, p), append(entryAt, i)
			continue
		case ProblemOrphanKey, ProblemStepMissing, ProblemStepUnindexed:
			keyed, keyedAt = append(keyed, p), append(keyedAt, i)
			continue
		}
		if id, err := uuid.Parse(p.FlowID); err == nil && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	again := map[uuid.UUID]*flowSnap{}
	for i := 0; i < len(ids); i += 200 {
		got, _, err := s.snapshotFlows(ctx, ids[i:min(i+200, len(ids))])
		if err != nil {
			return nil, err
		}
		for _, sn := range got {
			again[sn.id] = sn
		}
	}
	for i, p := range found {
		id, err := uuid.Parse(p.FlowID)
		if err != nil {
			holds[i] = p.Kind != ProblemStaleIndexEntry && p.Kind != ProblemOrphanKey && p.Kind != ProblemStepMissing && p.Kind != ProblemStepUnindexed
			continue
		}
		sn := again[id]
		switch p.Kind {
		case ProblemStaleIndexEntry, ProblemOrphanKey, ProblemStepMissing, ProblemStepUnindexed:
		case ProblemUnreadableFlow:
			holds[i] = sn == nil
		default:
			if sn == nil {
				continue
			}
			for _, q := range s.checkFlow(sn, nil) {
				if q.Kind == p.Kind && q.Key == p.Key {
					holds[i] = true
					break
				}
			}
		}
	}
	for i := 0; i < len(entries); i += 200 {
		ok, err := s.confirmEntries(ctx, entries[i:min(i+200, len(entries))])
		if err != nil {
			return nil, err
		}
		for j, h := range ok {
			holds[entryAt[i+j]] = h
		}
	}
	for i := 0; i < len(keyed); i += 200 {
		ok, err := s.confirmKeyed(ctx, keyed[i:min(i+200, len(keyed))])
		if err != nil {
			return nil, err
		}
		for j, h := range ok {
			holds[keyedAt[i+j]] = h
		}
	}
	var out []Problem
	for i, p := range found {
		if holds[i] {
			out = append(out, p)
		}
	}
	return out, nil
}

// entryStillStale re-checks a stale index entry against a fresh snapshot.
func (s *RedisStore) entryStillStale(p Problem, sn *flowSnap) bool {
	shard := s.keys.shardOf(sn.id)
	if !strings.HasPrefix(p.Key, s.keys.tag(shard)+":") {
		return true // an entry in another shard's index is always stale
	}
	member := p.Member
	switch {
	case strings.HasPrefix(p.Key, s.keys.tag(shard)+":status:"):
		return sn.fields["status"] != strings.TrimPrefix(p.Key, s.keys.tag(shard)+":status:")
	case strings.HasPrefix(p.Key, s.keys.tag(shard)+":owner:"):
		return sn.fields["owner"] != strings.TrimPrefix(p.Key, s.keys.tag(shard)+":owner:")
	case p.Key == s.keys.timers(shard):
		t, _, _ := s.expectedWait(sn.id, sn.fields)
		return t == ""
	case p.Key == s.keys.cancelWait(shard):
		return !(FlowStatus(sn.fields["status"]).waits() && sn.fields["cancel"] == "1")
	case p.Key == s.keys.corr(shard):
		_, c, _ := s.expectedWait(sn.id, sn.fields)
		return c != member
	case strings.HasPrefix(p.Key, s.keys.tag(shard)+":ready:"):
		ctl := strings.TrimPrefix(p.Key, s.keys.tag(shard)+":ready:")
		return !(FlowStatus(sn.fields["status"]).runnable() && sn.fields["controller"] == ctl && sn.lease == "")
	case p.Key == s.keys.leases(shard), p.Key == s.keys.leaseExp(shard):
		return !FlowStatus(sn.fields["status"]).runnable()
	}
	return true
}
