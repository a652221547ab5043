package taskflow

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/fsck"
)

// Verify, taskflow's consistency check (package fsck names what it
// reports), lives in three files: this one scans a shard, reads its flows
// and gathers the report; verify_rules.go holds the rules a flow's record
// implies for its keys and its shard's indexes; repair.go re-checks what
// was found beside live traffic and repairs it.

// Verify walks the flow space shard by shard and checks every invariant
// the scripts maintain: each flow is in exactly its status's index, in
// its owner's, its controller's and its search attributes' (and no
// controller or attribute index holds a flow that does not belong); a waiting flow has a wait, and only waiting flows do; a
// waiting timer flow is in the timer set at its deadline and no other
// flow is; correlation entries point at flows waiting for them; the
// cancel set holds exactly the waiting flows with a cancel request; the
// newest audit event carries the flow's revision; every step in a flow's
// step set has its record and every step record is in the set; no key is
// left of a flow that does not exist (kept early events included); a
// flow made with an idempotency key has a version 5 id and a well-formed
// input fingerprint; an attempts count is a positive integer; kept early
// events (early.go) sit in lists with a TTL, readable, on the shard
// that reads them, and every claim of one has its due entry; every
// schedule decodes, is listed, and is in the due index exactly when
// neither paused nor done, and every schedule index entry names one; a
// ready flow with concurrency keys or a priority waits on its lane in
// the gate, and every live slot the gate holds belongs to its flow's
// live lease. It reports
// and changes nothing unless fsck.WithRepair is given. Flows changing
// while Verify runs are re-read before a problem is reported. The package
// fsck documents each kind of problem and what its repair does.
//
// An error stops the walk; the report returned beside it holds what the
// shards checked before it found (and, with repair, repaired).
func (m *Manager) Verify(ctx context.Context, opts ...fsck.Option) (*fsck.Report, error) {
	return m.store.verify(ctx, opts...)
}

// verify is Manager.Verify on the store.
func (s *RedisStore) verify(ctx context.Context, opts ...fsck.Option) (*fsck.Report, error) {
	cfg := fsck.Apply(opts...)
	if err := s.ensureLoaded(ctx); err != nil {
		return nil, err
	}
	rep := &fsck.Report{Shards: s.keys.shards, Problems: []fsck.Problem{}}
	for shard := 0; shard < s.keys.shards; shard++ {
		if err := s.verifyShard(ctx, shard, cfg, rep); err != nil {
			return rep, err
		}
	}
	if err := s.verifyGate(ctx, cfg, rep); err != nil {
		return rep, err
	}
	if err := s.verifySchedules(ctx, cfg, rep); err != nil {
		return rep, err
	}
	return rep, nil
}

// verifySchedules checks the schedules' keys ({sched}, schedules.go):
// each schedule decodes and is in the names index, and in the due index
// exactly when neither paused nor done; each index entry names a
// schedule. A schedule is read with its entries in one transaction, and a
// repair is a transaction watching its hash (every schedule write writes
// the hash), so a schedule changed meanwhile is left.
func (s *RedisStore) verifySchedules(ctx context.Context, cfg fsck.Config, rep *fsck.Report) error {
	var node redis.Cmdable = s.client
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		n, err := cc.MasterForKey(ctx, s.keys.schedTag())
		if err != nil {
			return fmt.Errorf("taskflow: verify schedules: %w", err)
		}
		node = n
	}
	prefix := s.keys.schedule("")
	var cursor uint64
	for {
		keys, next, err := node.Scan(ctx, cursor, escapeGlob(prefix)+"*", 1000).Result()
		if err != nil {
			return fmt.Errorf("taskflow: verify schedules: %w", err)
		}
		for _, k := range keys {
			rep.Keys++
			if err := s.verifySchedule(ctx, strings.TrimPrefix(k, prefix), cfg, rep); err != nil {
				return err
			}
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	// Index entries naming no schedule.
	for _, index := range []string{s.keys.schedNames(), s.keys.schedDue()} {
		for start := int64(0); ; start += 1000 {
			names, err := s.client.ZRange(ctx, index, start, start+999).Result()
			if err != nil {
				return fmt.Errorf("taskflow: verify schedules: %w", err)
			}
			pipe := s.client.Pipeline()
			exists := make([]*redis.IntCmd, len(names))
			for i, n := range names {
				exists[i] = pipe.Exists(ctx, s.keys.schedule(n))
			}
			if len(names) > 0 {
				if _, err := pipe.Exec(ctx); err != nil {
					return fmt.Errorf("taskflow: verify schedules: %w", err)
				}
			}
			for i, n := range names {
				if exists[i].Val() == 1 {
					continue
				}
				if err := s.verifySchedule(ctx, n, cfg, rep); err != nil {
					return err
				}
			}
			if len(names) < 1000 {
				break
			}
		}
	}
	return nil
}

// verifySchedule checks schedule name and its index entries (see
// verifySchedules), and repairs them when cfg says so.
func (s *RedisStore) verifySchedule(ctx context.Context, name string, cfg fsck.Config, rep *fsck.Report) error {
	hashKey, dueKey, namesKey := s.keys.schedule(name), s.keys.schedDue(), s.keys.schedNames()
	var h *redis.MapStringStringCmd
	var due, listed *redis.FloatCmd
	read := func(tx redis.Pipeliner) error {
		h = tx.HGetAll(ctx, hashKey)
		due = tx.ZScore(ctx, dueKey, name)
		listed = tx.ZScore(ctx, namesKey, name)
		return nil
	}
	if _, err := s.client.TxPipelined(ctx, read); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("taskflow: verify schedule %q: %w", name, err)
	}
	inDue, inNames := due.Err() == nil, listed.Err() == nil
	if len(h.Val()) == 0 {
		if !inDue && !inNames {
			return nil // deleted meanwhile
		}
		p := fsck.Problem{Kind: fsck.ScheduleIndexStale, Key: namesKey, Member: name, Detail: "an index entry names no schedule"}
		if inDue {
			p.Key = dueKey
		}
		if cfg.Repair {
			p.Repaired = s.dropGhost(ctx, name)
		}
		rep.Problems = append(rep.Problems, p)
		return nil
	}
	sc, err := decodeSchedule(name, h.Val())
	if err == nil {
		sc.zones = &s.zones
		_, err = sc.timing()
	}
	if err != nil {
		rep.Problems = append(rep.Problems, fsck.Problem{Kind: fsck.BadSchedule, Key: hashKey, Member: name, Detail: err.Error()})
		return nil
	}
	wantDue := !sc.in.Paused && !sc.done
	var found []fsck.Problem
	if !inNames {
		found = append(found, fsck.Problem{Kind: fsck.ScheduleUnindexed, Key: namesKey, Member: name,
			Detail: "the schedule is not in the names index: ListSchedules does not show it"})
	}
	if wantDue && !inDue {
		found = append(found, fsck.Problem{Kind: fsck.ScheduleUnindexed, Key: dueKey, Member: name,
			Detail: "the schedule is neither paused nor done and not in the due index: it never fires"})
	}
	if !wantDue && inDue {
		found = append(found, fsck.Problem{Kind: fsck.ScheduleIndexStale, Key: dueKey, Member: name,
			Detail: "the schedule is paused or done and in the due index"})
	}
	if len(found) > 0 && cfg.Repair {
		at, _ := strconv.ParseInt(h.Val()["due"], 10, 64)
		if at <= 0 {
			now, _ := s.clock()
			at = now.UnixMilli()
		}
		// Watch the hash: every schedule write writes it, so a
		// schedule changed since the read is left.
		err := s.client.Watch(ctx, func(tx *redis.Tx) error {
			cur, err := tx.HGetAll(ctx, hashKey).Result()
			if err != nil {
				return err
			}
			if !maps.Equal(cur, h.Val()) {
				return redis.TxFailedErr
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				for _, pr := range found {
					switch {
					case pr.Key == namesKey:
						p.ZAdd(ctx, namesKey, redis.Z{Score: 0, Member: name})
					case pr.Kind == fsck.ScheduleUnindexed:
						p.ZAdd(ctx, dueKey, redis.Z{Score: float64(at), Member: name})
					default:
						p.ZRem(ctx, dueKey, name)
					}
				}
				return nil
			})
			return err
		}, hashKey)
		if err != nil && !errors.Is(err, redis.TxFailedErr) {
			return fmt.Errorf("taskflow: verify schedule %q: repair: %w", name, err)
		}
		for i := range found {
			found[i].Repaired = err == nil
		}
	}
	rep.Problems = append(rep.Problems, found...)
	return nil
}

// shardKeys is what a SCAN of one shard found.
type shardKeys struct {
	flows   []uuid.UUID
	byID    map[uuid.UUID][]string // non-flow keys of each flow id
	steps   map[uuid.UUID][]string // run ids of step records
	owners  []string               // owner index keys
	finds   []string               // controller and attribute index keys (find.go)
	readies []string               // ready queue keys
	early   []string               // early-event lists (early.go)
	unknown []string
}

// nodeFor returns the client that holds shard's slot (the cluster master
// for it, or the client itself).
func (s *RedisStore) nodeFor(ctx context.Context, shard int) (redis.Cmdable, error) {
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		return cc.MasterForKey(ctx, s.keys.tag(shard))
	}
	return s.client, nil
}

func (s *RedisStore) scanShard(ctx context.Context, shard int, rep *fsck.Report) (*shardKeys, error) {
	node, err := s.nodeFor(ctx, shard)
	if err != nil {
		return nil, fmt.Errorf("taskflow: verify: %w", err)
	}
	tag := s.keys.tag(shard) + ":"
	sk := &shardKeys{byID: map[uuid.UUID][]string{}, steps: map[uuid.UUID][]string{}}
	pattern := escapeGlob(tag) + "*"
	var cursor uint64
	for {
		keys, next, err := node.Scan(ctx, cursor, pattern, 1000).Result()
		if err != nil {
			return nil, fmt.Errorf("taskflow: verify scan: %w", err)
		}
		for _, k := range keys {
			rep.Keys++
			s.classify(shard, strings.TrimPrefix(k, tag), k, sk)
		}
		if next == 0 {
			return sk, nil
		}
		cursor = next
	}
}

// classify files one key of a shard by what it is.
func (s *RedisStore) classify(shard int, rest, key string, sk *shardKeys) {
	kind, tail, _ := strings.Cut(rest, ":")
	switch kind {
	case "flow", "events", "steps", "kids", "kidres":
		id, err := uuid.Parse(tail)
		if err != nil {
			sk.unknown = append(sk.unknown, key)
			return
		}
		if kind == "flow" {
			sk.flows = append(sk.flows, id)
		} else {
			sk.byID[id] = append(sk.byID[id], key)
		}
	case "step":
		if len(tail) < 37 {
			sk.unknown = append(sk.unknown, key)
			return
		}
		id, err := uuid.Parse(tail[:36])
		if err != nil || tail[36] != ':' {
			sk.unknown = append(sk.unknown, key)
			return
		}
		sk.steps[id] = append(sk.steps[id], tail[37:])
	case "owner":
		sk.owners = append(sk.owners, key)
	case "ctl", "attr":
		sk.finds = append(sk.finds, key)
	case "ready":
		sk.readies = append(sk.readies, key)
	case "inbox", "mbox":
		sk.early = append(sk.early, key)
	case "status", "timers", "cancelwait", "corr", "leases", "leasexp", "ticklock",
		"kept", "claims", "claimdue", "used", "take", "controllers", "watched", "leased", "relay", "joins":
	default:
		sk.unknown = append(sk.unknown, key)
	}
}

// escapeGlob escapes SCAN MATCH metacharacters.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// flowSnap is one flow as verify_flow.lua read it.
type flowSnap struct {
	id          uuid.UUID
	fields      map[string]string
	scores      []string
	ownerScore  string
	timerScore  string
	cancelWait  bool
	corrScore   string
	lastEvent   string
	stepMembers []string
	readyScore  string
	lease       string
	leaseExp    string
	ctlScore    string            // score in its controller's index (Find)
	attrScores  map[string]string // attribute name -> score in its index
}

func (s *RedisStore) verifyShard(ctx context.Context, shard int, cfg fsck.Config, rep *fsck.Report) error {
	sk, err := s.scanShard(ctx, shard, rep)
	if err != nil {
		return err
	}
	snaps := map[uuid.UUID]*flowSnap{}
	var unreadable []fsck.Problem
	const batch = 200
	for i := 0; i < len(sk.flows); i += batch {
		end := min(i+batch, len(sk.flows))
		got, bad, err := s.snapshotFlows(ctx, sk.flows[i:end])
		if err != nil {
			return err
		}
		for _, sn := range got {
			snaps[sn.id] = sn
		}
		unreadable = append(unreadable, bad...)
	}
	rep.Flows += len(snaps) + len(unreadable)
	found := unreadable
	ids := make([]uuid.UUID, 0, len(snaps))
	for id := range snaps {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a].String() < ids[b].String() })
	for _, id := range ids {
		found = append(found, s.checkFlow(snaps[id], sk.steps[id])...)
	}
	// Keys of flows that do not exist.
	exists := func(id uuid.UUID) bool {
		if snaps[id] != nil {
			return true
		}
		for _, p := range unreadable {
			if p.FlowID == id.String() {
				return true
			}
		}
		return false
	}
	for id, keys := range sk.byID {
		if !exists(id) {
			for _, k := range keys {
				found = append(found, fsck.Problem{Kind: fsck.OrphanKey, FlowID: id.String(), Key: k, Detail: "no flow record"})
			}
		}
	}
	for id, runs := range sk.steps {
		if !exists(id) {
			for _, r := range runs {
				found = append(found, fsck.Problem{Kind: fsck.OrphanKey, FlowID: id.String(), Key: s.keys.step(id, r), Detail: "no flow record"})
			}
		}
	}
	// Early events of a flow that no longer exists: a flow's list is only
	// written while its flow exists, so one without a flow was left by a
	// delete (a flow made again with the id would take its events).
	flowTag := s.keys.tag(shard) + ":inbox:"
	for _, k := range sk.early {
		id, err := uuid.Parse(strings.TrimPrefix(k, flowTag))
		if strings.HasPrefix(k, flowTag) && err == nil && s.keys.shardOf(id) == shard && !exists(id) {
			found = append(found, fsck.Problem{Kind: fsck.OrphanKey, FlowID: id.String(), Key: k, Detail: "kept events of a flow that no longer exists"})
		}
	}
	for _, k := range sk.unknown {
		found = append(found, fsck.Problem{Kind: fsck.UnknownKey, Key: k, Detail: "not a key taskflow writes"})
	}
	idx, err := s.checkIndexes(ctx, shard, sk, snaps, exists)
	if err != nil {
		return err
	}
	found = append(found, idx...)
	early, err := s.checkEarly(ctx, shard, sk.early)
	if err != nil {
		return err
	}
	found = append(found, early...)
	joins, err := s.checkJoins(ctx, snaps)
	if err != nil {
		return err
	}
	found = append(found, joins...)
	// Re-read what looks wrong: a flow that moved while we looked is fine.
	found, err = s.confirmProblems(ctx, found)
	if err != nil {
		return err
	}
	if cfg.Repair {
		if err := s.repair(ctx, shard, found); err != nil {
			return err
		}
	}
	rep.Problems = append(rep.Problems, found...)
	gated, err := s.checkGateQueued(ctx, shard, snaps, cfg.Repair)
	rep.Problems = append(rep.Problems, gated...)
	return err
}

// snapshotFlows reads flows with verify_flow.lua, two pipelines: the
// owners first (the script needs the owner index key), then the scripts.
func (s *RedisStore) snapshotFlows(ctx context.Context, ids []uuid.UUID) ([]*flowSnap, []fsck.Problem, error) {
	pipe := s.client.Pipeline()
	owners := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		owners[i] = pipe.HGet(ctx, s.keys.flow(id), "owner")
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, nil, fmt.Errorf("taskflow: verify: %w", err)
	}
	calls := make([]scriptCall, len(ids))
	for i, id := range ids {
		keys := s.keys.flowKeys(id, "")
		keys = append(keys, s.keys.owner(s.keys.shardOf(id), owners[i].Val()))
		calls[i] = scriptCall{s.scripts.verifyFlow, keys, []any{id.String()}}
	}
	vals, errs := s.runPipelined(ctx, calls)
	out := make([]*flowSnap, 0, len(ids))
	var problems []fsck.Problem
	for i, id := range ids {
		var rerr redis.Error
		if errors.As(errs[i], &rerr) {
			// A server error reading this flow (a key of the wrong type):
			// report it and go on with the others.
			problems = append(problems, fsck.Problem{Kind: fsck.UnreadableFlow, FlowID: id.String(), Key: s.keys.flow(id), Detail: rerr.Error()})
			continue
		}
		if errs[i] != nil {
			return nil, nil, fmt.Errorf("taskflow: verify flow %s: %w", id, errs[i])
		}
		arr, _ := vals[i].([]any)
		if len(arr) < 11 {
			continue // deleted meanwhile
		}
		sn := &flowSnap{id: id, fields: map[string]string{}}
		raw, _ := arr[0].([]any)
		for j := 0; j+1 < len(raw); j += 2 {
			k, _ := raw[j].(string)
			v, _ := raw[j+1].(string)
			sn.fields[k] = v
		}
		for _, sc := range asSlice(arr[1]) {
			v, _ := sc.(string)
			sn.scores = append(sn.scores, v)
		}
		sn.ownerScore, _ = arr[2].(string)
		sn.timerScore, _ = arr[3].(string)
		cw, _ := arr[4].(int64)
		sn.cancelWait = cw == 1
		sn.corrScore, _ = arr[5].(string)
		sn.lastEvent, _ = arr[6].(string)
		for _, m := range asSlice(arr[7]) {
			v, _ := m.(string)
			sn.stepMembers = append(sn.stepMembers, v)
		}
		sn.readyScore, _ = arr[8].(string)
		sn.lease, _ = arr[9].(string)
		sn.leaseExp, _ = arr[10].(string)
		if len(arr) >= 13 {
			sn.ctlScore, _ = arr[11].(string)
			pairs := asSlice(arr[12])
			sn.attrScores = make(map[string]string, len(pairs)/2)
			for j := 0; j+1 < len(pairs); j += 2 {
				n, _ := pairs[j].(string)
				v, _ := pairs[j+1].(string)
				sn.attrScores[n] = v
			}
		}
		out = append(out, sn)
	}
	return out, problems, nil
}

func asSlice(v any) []any { a, _ := v.([]any); return a }

// gateVerifyBudget bounds the live slots a Verify pass reads from the
// gate, and the live admissions it reads to judge its shards' ready
// flows (checkGateQueued): beyond it, what is not read is not judged.
const gateVerifyBudget = 10000

// gateAdmitted reads the live admissions of the gate (members '<id>|<token>'
// scored by expiry, after nowMs), at most gateVerifyBudget: the flow ids
// admitted, and whether all were read.
func (s *RedisStore) gateAdmitted(ctx context.Context, nowMs string) (map[string]bool, bool, error) {
	ms, err := s.client.ZRangeByScore(ctx, s.keys.gateAdmissions(), &redis.ZRangeBy{Min: "(" + nowMs, Max: "+inf", Count: gateVerifyBudget}).Result()
	if err != nil {
		return nil, false, fmt.Errorf("taskflow: verify gate: %w", err)
	}
	out := make(map[string]bool, len(ms))
	for _, m := range ms {
		id, _, _ := strings.Cut(m, "|")
		out[id] = true
	}
	return out, len(ms) < gateVerifyBudget, nil
}

// checkGateQueued reports the ready flows of a shard (running, unleased,
// with a gate field 'gk') that no claim will find: on no lane in the gate
// (its queue entry and its entry in the queued flows' hash, which an
// admission checks), with no relay entry 'g <id>' to queue one, and no
// live admission. A ready flow moves on from relay entry to lane to
// admission to lease, so it reads each in that order, a round trip
// apart, and the flow last: a flow that moved on meanwhile is found in a
// later read. With repair, each is queued on its lane (gate_enqueue.lua).
// Problem: gate_unqueued.
func (s *RedisStore) checkGateQueued(ctx context.Context, shard int, snaps map[uuid.UUID]*flowSnap, repair bool) ([]fsck.Problem, error) {
	var cands []*flowSnap
	for _, sn := range snaps {
		if FlowStatus(sn.fields["status"]).runnable() && sn.lease == "" && sn.fields["gk"] != "" {
			cands = append(cands, sn)
		}
	}
	if len(cands) == 0 {
		return nil, nil
	}
	sort.Slice(cands, func(a, b int) bool { return cands[a].id.String() < cands[b].id.String() })
	fail := func(err error) ([]fsck.Problem, error) { return nil, fmt.Errorf("taskflow: verify gate: %w", err) }
	k := s.keys
	laneOf := func(sn *flowSnap) string {
		keys, prio := parseGateField(sn.fields["gk"])
		group := ""
		if len(keys) > 0 {
			group = keys[0]
		}
		return k.gateQueue(prio, group, sn.fields["controller"])
	}
	// The relay entries, then the lanes.
	pipe := s.client.Pipeline()
	relay := make([]*redis.FloatCmd, len(cands))
	for i, sn := range cands {
		relay[i] = pipe.ZScore(ctx, k.relay(shard), "g "+sn.id.String())
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fail(err)
	}
	pipe = s.client.Pipeline()
	queued := make([]*redis.FloatCmd, len(cands))
	meta := make([]*redis.StringCmd, len(cands))
	for i, sn := range cands {
		queued[i] = pipe.ZScore(ctx, laneOf(sn), sn.id.String())
		meta[i] = pipe.HGet(ctx, k.gateQueued(), sn.id.String())
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fail(err)
	}
	_, nowMs := s.clock()
	admitted, all, err := s.gateAdmitted(ctx, nowMs)
	if err != nil {
		return nil, err
	}
	var lost []*flowSnap
	for i, sn := range cands {
		onLane := queued[i].Err() == nil && meta[i].Val() == gateRecord(sn.fields["controller"], sn.fields["gk"])
		if relay[i].Err() == nil || onLane || admitted[sn.id.String()] || !all {
			continue
		}
		lost = append(lost, sn)
	}
	if len(lost) == 0 {
		return nil, nil
	}
	// The flows again: still ready, unleased, with the same field.
	pipe = s.client.Pipeline()
	recs := make([]*redis.SliceCmd, len(lost))
	leases := make([]*redis.StringCmd, len(lost))
	for i, sn := range lost {
		recs[i] = pipe.HMGet(ctx, k.flow(sn.id), "status", "controller", "gk")
		leases[i] = pipe.HGet(ctx, k.leases(shard), sn.id.String())
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fail(err)
	}
	var out []fsck.Problem
	for i, sn := range lost {
		v := recs[i].Val()
		if len(v) != 3 || leases[i].Val() != "" {
			continue
		}
		st, _ := v[0].(string)
		ctl, _ := v[1].(string)
		gk, _ := v[2].(string)
		if !FlowStatus(st).runnable() || ctl != sn.fields["controller"] || gk != sn.fields["gk"] {
			continue
		}
		p := fsck.Problem{Kind: fsck.GateUnqueued, FlowID: sn.id.String(), Key: laneOf(sn),
			Detail: "ready flow with concurrency keys or a priority on no lane in the gate, with no relay entry to queue it there: no claim finds it"}
		if repair {
			if err := s.gateEnqueue(ctx, sn.id, ctl, gk); err != nil {
				return out, fmt.Errorf("taskflow: repair: %w", err)
			}
			p.Repaired = true
		}
		out = append(out, p)
	}
	return out, nil
}

// gateSlot is one live slot Verify read from the gate: member
// '<id>|<token>' of key (a key's held slots, or the admissions).
type gateSlot struct {
	key, member string
}

// verifyGate checks the live slots of the gate (members '<id>|<token>' of
// every key's held slots and of the admissions, scored by an expiry yet
// to come; at most gateVerifyBudget): each belongs to its flow's live
// lease. A slot whose flow is gone, no longer running, or leased under
// another token is orphaned: it counts against its key until it
// expires. A running flow leased to nobody may be being leased under it
// right now (gate_admit.lua, then claim_take.lua): its slots are left to
// the tick, which settles them at their expiry. Judged twice, a round
// trip apart. With repair, an orphaned admission's slots go back
// (gate_release.lua), and a slot that no admission lists is dropped.
// Problem: gate_slot_orphaned.
func (s *RedisStore) verifyGate(ctx context.Context, cfg fsck.Config, rep *fsck.Report) error {
	var node redis.Cmdable = s.client
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		n, err := cc.MasterForKey(ctx, s.keys.gateTag())
		if err != nil {
			return fmt.Errorf("taskflow: verify gate: %w", err)
		}
		node = n
	}
	sources := []string{s.keys.gateAdmissions()}
	pattern := escapeGlob(s.keys.gateHeld("")) + "*"
	var cursor uint64
	for {
		keys, next, err := node.Scan(ctx, cursor, pattern, 1000).Result()
		if err != nil {
			return fmt.Errorf("taskflow: verify gate: %w", err)
		}
		sources = append(sources, keys...)
		if next == 0 {
			break
		}
		cursor = next
	}
	sort.Strings(sources[1:])
	_, nowMs := s.clock()
	var slots []gateSlot
	left := int64(gateVerifyBudget)
	for _, key := range sources {
		if left <= 0 {
			break
		}
		ms, err := s.client.ZRangeByScore(ctx, key, &redis.ZRangeBy{Min: "(" + nowMs, Max: "+inf", Count: left}).Result()
		if err != nil {
			return fmt.Errorf("taskflow: verify gate: %w", err)
		}
		rep.Keys++
		left -= int64(len(ms))
		for _, m := range ms {
			slots = append(slots, gateSlot{key, m})
		}
	}
	orphaned, err := s.orphanedSlots(ctx, slots)
	if err != nil || len(orphaned) == 0 {
		return err
	}
	var again []gateSlot
	for _, sl := range slots {
		if _, ok := orphaned[sl.member]; ok {
			again = append(again, sl)
		}
	}
	confirmed, err := s.orphanedSlots(ctx, again)
	if err != nil {
		return err
	}
	var found []fsck.Problem
	for _, sl := range again {
		why, ok := confirmed[sl.member]
		if !ok {
			continue
		}
		raw, _, _ := strings.Cut(sl.member, "|")
		p := fsck.Problem{Kind: fsck.GateSlotOrphaned, Key: sl.key, Member: sl.member, Detail: "live slot of a lease its flow does not hold: " + why}
		if id, err := uuid.Parse(raw); err == nil {
			p.FlowID = id.String()
		}
		found = append(found, p)
	}
	if cfg.Repair {
		if err := s.repairSlots(ctx, found); err != nil {
			rep.Problems = append(rep.Problems, found...)
			return err
		}
	}
	rep.Problems = append(rep.Problems, found...)
	return nil
}

// orphanedSlots reads, for each slot still in its key with an expiry to
// come, its flow's status and lease, and returns the members whose flow
// does not hold that lease and never will (gone, not running, or leased
// under another token), each with why.
func (s *RedisStore) orphanedSlots(ctx context.Context, slots []gateSlot) (map[string]string, error) {
	out := map[string]string{}
	if len(slots) == 0 {
		return out, nil
	}
	_, nowMs := s.clock()
	now, _ := strconv.ParseFloat(nowMs, 64)
	pipe := s.client.Pipeline()
	scores := make([]*redis.FloatCmd, len(slots))
	for i, sl := range slots {
		scores[i] = pipe.ZScore(ctx, sl.key, sl.member)
	}
	type read struct {
		status, lease *redis.StringCmd
	}
	reads := map[string]read{}
	for _, sl := range slots {
		raw, _, _ := strings.Cut(sl.member, "|")
		id, err := uuid.Parse(raw)
		if _, seen := reads[sl.member]; seen || err != nil {
			continue
		}
		reads[sl.member] = read{pipe.HGet(ctx, s.keys.flow(id), "status"), pipe.HGet(ctx, s.keys.leases(s.keys.shardOf(id)), id.String())}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("taskflow: verify gate: %w", err)
	}
	for i, sl := range slots {
		if scores[i].Err() != nil || scores[i].Val() <= now {
			continue // given back, or expired: the gate drops it itself
		}
		raw, token, ok := strings.Cut(sl.member, "|")
		r, parsed := reads[sl.member]
		if _, err := uuid.Parse(raw); err != nil || !ok || !parsed {
			out[sl.member] = "the member names no flow"
			continue
		}
		st := FlowStatus(r.status.Val())
		lease := r.lease.Val()
		tok, _, _ := strings.Cut(lease, "|")
		switch {
		case st == "":
			out[sl.member] = "the flow is gone"
		case !st.runnable():
			out[sl.member] = "the flow is " + string(st)
		case lease != "" && tok != token:
			out[sl.member] = "the flow is leased under another token"
		}
	}
	return out, nil
}
