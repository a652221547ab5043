package taskflow

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/fsck"
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
func (s *RedisStore) confirmEntries(ctx context.Context, ps []*fsck.Problem) ([]bool, error) {
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
func (s *RedisStore) confirmKeyed(ctx context.Context, ps []*fsck.Problem) ([]bool, error) {
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
			if pr.Kind != fsck.OrphanKey {
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
		case fsck.OrphanKey:
			out[i] = !flow && key
		case fsck.StepMissing:
			out[i] = flow && !key && c.member.Err() == nil
		case fsck.StepUnindexed:
			out[i] = flow && key && errors.Is(c.member.Err(), redis.Nil)
		}
	}
	return out, nil
}

// confirmProblems re-checks the problems found and keeps the ones still
// there: Verify runs beside live traffic, and each re-check reads the
// flow together with what it is compared with (see the top of this file).
func (s *RedisStore) confirmProblems(ctx context.Context, found []fsck.Problem) ([]fsck.Problem, error) {
	if len(found) == 0 {
		return found, nil
	}
	holds := make([]bool, len(found))
	var entries, keyed []*fsck.Problem
	var entryAt, keyedAt []int
	var ids []uuid.UUID
	seen := map[uuid.UUID]bool{}
	for i := range found {
		p := &found[i]
		switch p.Kind {
		case fsck.StaleIndexEntry:
			entries, entryAt = append(entries, p), append(entryAt, i)
			continue
		case fsck.OrphanKey, fsck.StepMissing, fsck.StepUnindexed:
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
			holds[i] = p.Kind != fsck.StaleIndexEntry && p.Kind != fsck.OrphanKey && p.Kind != fsck.StepMissing && p.Kind != fsck.StepUnindexed
			continue
		}
		sn := again[id]
		switch p.Kind {
		case fsck.StaleIndexEntry, fsck.OrphanKey, fsck.StepMissing, fsck.StepUnindexed:
		case fsck.ChildMissing, fsck.ChildElsewhere, fsck.ChildUndelivered:
			if sn == nil || sn.fields["status"] != string(StatusWaiting) {
				continue // the parent moved on
			}
			again, err := s.stuckChildren(ctx, id, []string{p.Member})
			if err != nil {
				return nil, err
			}
			holds[i] = len(again) == 1 && again[0].Kind == p.Kind
		case fsck.UnreadableFlow:
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
	var out []fsck.Problem
	for i, p := range found {
		if holds[i] {
			out = append(out, p)
		}
	}
	return out, nil
}

// entryStillStale re-checks a stale index entry against a fresh snapshot.
func (s *RedisStore) entryStillStale(p fsck.Problem, sn *flowSnap) bool {
	shard := s.keys.shardOf(sn.id)
	if !strings.HasPrefix(p.Key, s.keys.tag(shard)+":") {
		return true // an entry in another shard's index is always stale
	}
	member := p.Member
	switch {
	case p.Key == s.keys.leases(shard) && strings.HasPrefix(member, leaseTokenField):
		return leaseToken(sn.lease) != strings.TrimPrefix(member, leaseTokenField)
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
	case strings.HasPrefix(p.Key, s.keys.tag(shard)+":ctl:"), strings.HasPrefix(p.Key, s.keys.tag(shard)+":attr:"):
		return !s.inFindIndex(shard, p.Key, sn)
	case strings.HasPrefix(p.Key, s.keys.tag(shard)+":ready:"):
		ctl := strings.TrimPrefix(p.Key, s.keys.tag(shard)+":ready:")
		return !(FlowStatus(sn.fields["status"]).runnable() && sn.fields["controller"] == ctl && sn.lease == "" &&
			sn.fields["gk"] == "")
	case p.Key == s.keys.leases(shard), p.Key == s.keys.leaseExp(shard):
		return !FlowStatus(sn.fields["status"]).runnable()
	}
	return true
}

// Repairs (Verify with fsck.WithRepair): each runs in a script that
// changes nothing when the flow moved on since it was read (see the top
// of this file for why that is safe beside live workers).

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
func (s *RedisStore) repair(ctx context.Context, shard int, found []fsck.Problem) error {
	reindex := map[uuid.UUID]*reindexFix{}
	reindexed := map[uuid.UUID][]int{} // the problems each reindex repairs
	orphans := map[uuid.UUID][]string{}
	for i := range found {
		p := &found[i]
		id, err := uuid.Parse(p.FlowID)
		switch {
		case p.Kind == fsck.UnknownKey || p.Kind == fsck.BadFlow || p.Kind == fsck.BadWait ||
			p.Kind == fsck.BadEvent || p.Kind == fsck.EventRevision || p.Kind == fsck.EventsMissing ||
			p.Kind == fsck.WaitMissing || p.Kind == fsck.WaitExtra || p.Kind == fsck.StepMissing ||
			p.Kind == fsck.WrongType || p.Kind == fsck.UnreadableFlow || p.Kind == fsck.BadIdempotency ||
			p.Kind == fsck.BadAttempts:
			// Records are not rewritten: these need a person.
			continue
		case p.Kind == fsck.ControllerUnlisted:
			if err := s.client.SAdd(ctx, p.Key, p.Member).Err(); err != nil {
				return fmt.Errorf("taskflow: repair: %w", err)
			}
		case p.Kind == fsck.StaleIndexEntry && (err != nil || s.keys.shardOf(id) != shard ||
			p.Key == s.keys.leases(shard) && strings.HasPrefix(p.Member, leaseTokenField)):
			// The entry names no flow of this shard, or is the claim
			// memory of a lease that ended (no lease of the flow names
			// its token, and none will: tokens are not reused): drop it
			// where it is.
			if err := s.dropEntry(ctx, p.Key, p.Member); err != nil {
				return err
			}
		case err != nil:
			continue
		case p.Kind == fsck.ChildMissing || p.Kind == fsck.ChildElsewhere || p.Kind == fsck.ChildUndelivered:
			if err := s.repairChild(ctx, *p); err != nil {
				return err
			}
		case p.Kind == fsck.OrphanKey:
			orphans[id] = append(orphans[id], p.Key)
		case p.Kind == fsck.StepUnindexed:
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
			if p.Kind == fsck.StaleIndexEntry && (strings.HasPrefix(p.Key, s.keys.tag(shard)+":ready:") ||
				strings.HasPrefix(p.Key, s.keys.tag(shard)+":ctl:") || strings.HasPrefix(p.Key, s.keys.tag(shard)+":attr:")) {
				f.readies = append(f.readies, p.Key) // reindex_flow.lua drops the flow from each
			}
			if p.Key == s.keys.corr(shard) && p.Kind == fsck.StaleIndexEntry {
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

// repairSlots gives back the orphaned slots Verify confirmed: each
// admission's slots at once (gate_release.lua, with its lane entry when
// its flow is gone or ended), then any slot left in a key's held slots
// that no admission listed.
func (s *RedisStore) repairSlots(ctx context.Context, found []fsck.Problem) error {
	released := map[string]bool{}
	for i := range found {
		p := &found[i]
		raw, token, _ := strings.Cut(p.Member, "|")
		if id, err := uuid.Parse(raw); err == nil && !released[p.Member] {
			st, err := s.client.HGet(ctx, s.keys.flow(id), "status").Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return fmt.Errorf("taskflow: repair: %w", err)
			}
			if err := s.gateRelease(ctx, id, token, st == "" || FlowStatus(st).IsTerminal()); err != nil {
				return fmt.Errorf("taskflow: repair: %w", err)
			}
			released[p.Member] = true
		}
		// What gate_release.lua did not list (no admission names the
		// slot, or the member names no flow) goes here.
		if err := s.client.ZRem(ctx, p.Key, p.Member).Err(); err != nil {
			return fmt.Errorf("taskflow: repair: %w", err)
		}
		p.Repaired = true
	}
	return nil
}
