package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Problem is one broken invariant found by Verify.
type Problem struct {
	// Kind names the invariant, e.g. "status_index_missing" or "orphan_key".
	Kind   string `json:"kind"`
	FlowID string `json:"flow_id,omitempty"`
	Key    string `json:"key"`
	// Member is the index entry at fault, for stale_index_entry (for
	// controller_unlisted, the controller id missing from the set).
	Member string `json:"member,omitempty"`
	Detail string `json:"detail"`
	// Repaired is true when Verify ran with WithRepair and fixed it.
	Repaired bool `json:"repaired"`
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	Shards   int       `json:"shards"`
	Flows    int       `json:"flows"`
	Keys     int       `json:"keys"`
	Problems []Problem `json:"problems"`
}

// OK reports whether no problem was found.
func (r *VerifyReport) OK() bool { return len(r.Problems) == 0 }

// Unrepaired counts the problems left as they were.
func (r *VerifyReport) Unrepaired() int {
	n := 0
	for _, p := range r.Problems {
		if !p.Repaired {
			n++
		}
	}
	return n
}

// VerifyOption adjusts Verify.
type VerifyOption func(*verifyConfig)

type verifyConfig struct{ repair bool }

// WithRepair makes Verify fix what it finds: index entries are rebuilt
// from the flow records, stale entries dropped, and keys of flows that no
// longer exist deleted. Flow records and audit logs are never changed.
func WithRepair() VerifyOption { return func(c *verifyConfig) { c.repair = true } }

// Verify walks the flow space shard by shard and checks every invariant
// the scripts maintain: each flow is in exactly its status's index and in
// its owner's; a waiting flow has a wait, and only waiting flows do; a
// waiting timer flow is in the timer set at its deadline and no other
// flow is; correlation entries point at flows waiting for them; the
// cancel set holds exactly the waiting flows with a cancel request; the
// newest audit event carries the flow's revision; every step in a flow's
// step set has its record and every step record is in the set; no key is
// left of a flow that does not exist; a flow made with an idempotency
// key has a version 5 id and a well-formed input fingerprint; an
// attempts count is a positive integer; kept early events (mailbox.go)
// sit in lists with a TTL, readable, on the shard that reads them, and
// every claim of one has its due entry (checkEarly). It reports and
// changes nothing
// unless WithRepair is given. Flows changing while Verify runs are
// re-read before a problem is reported.
func (s *RedisStore) Verify(ctx context.Context, opts ...VerifyOption) (*VerifyReport, error) {
	var cfg verifyConfig
	for _, o := range opts {
		o(&cfg)
	}
	if err := s.ensureLoaded(ctx); err != nil {
		return nil, err
	}
	rep := &VerifyReport{Shards: s.keys.shards, Problems: []Problem{}}
	for shard := 0; shard < s.keys.shards; shard++ {
		if err := s.verifyShard(ctx, shard, cfg, rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// Verify checks the manager's flow space; see RedisStore.Verify.
func (m *Manager) Verify(ctx context.Context, opts ...VerifyOption) (*VerifyReport, error) {
	return m.store.Verify(ctx, opts...)
}

// shardKeys is what a SCAN of one shard found.
type shardKeys struct {
	flows   []uuid.UUID
	byID    map[uuid.UUID][]string // non-flow keys of each flow id
	steps   map[uuid.UUID][]string // run ids of step records
	owners  []string               // owner index keys
	readies []string               // ready queue keys
	early   []string               // kept event lists (mailbox.go)
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

func (s *RedisStore) scanShard(ctx context.Context, shard int, rep *VerifyReport) (*shardKeys, error) {
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
	case "flow", "events", "steps":
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
	case "ready":
		sk.readies = append(sk.readies, key)
	case "inbox", "mbox":
		sk.early = append(sk.early, key)
	case "status", "timers", "cancelwait", "corr", "leases", "leasexp", "ticklock",
		"kept", "claims", "claimdue", "used", "controllers", "watched":
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
}

func (s *RedisStore) verifyShard(ctx context.Context, shard int, cfg verifyConfig, rep *VerifyReport) error {
	sk, err := s.scanShard(ctx, shard, rep)
	if err != nil {
		return err
	}
	snaps := map[uuid.UUID]*flowSnap{}
	var unreadable []Problem
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
				found = append(found, Problem{Kind: "orphan_key", FlowID: id.String(), Key: k, Detail: "no flow record"})
			}
		}
	}
	for id, runs := range sk.steps {
		if !exists(id) {
			for _, r := range runs {
				found = append(found, Problem{Kind: "orphan_key", FlowID: id.String(), Key: s.keys.step(id, r), Detail: "no flow record"})
			}
		}
	}
	for _, k := range sk.unknown {
		found = append(found, Problem{Kind: "unknown_key", Key: k, Detail: "not a key taskflow writes"})
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
	// Re-read what looks wrong: a flow that moved while we looked is fine.
	found, err = s.confirmProblems(ctx, found)
	if err != nil {
		return err
	}
	if cfg.repair {
		if err := s.repair(ctx, shard, found); err != nil {
			return err
		}
	}
	rep.Problems = append(rep.Problems, found...)
	return nil
}

// snapshotFlows reads flows with verify_flow.lua, two pipelines: the
// owners first (the script needs the owner index key), then the scripts.
func (s *RedisStore) snapshotFlows(ctx context.Context, ids []uuid.UUID) ([]*flowSnap, []Problem, error) {
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
	var problems []Problem
	for i, id := range ids {
		var rerr redis.Error
		if errors.As(errs[i], &rerr) {
			// A server error reading this flow (a key of the wrong type):
			// report it and go on with the others.
			problems = append(problems, Problem{Kind: "unreadable_flow", FlowID: id.String(), Key: s.keys.flow(id), Detail: rerr.Error()})
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
		out = append(out, sn)
	}
	return out, problems, nil
}

func asSlice(v any) []any { a, _ := v.([]any); return a }

// expectedWait returns the timer deadline and correlation member a flow's
// record implies, and a problem when its wait is unreadable.
func (s *RedisStore) expectedWait(id uuid.UUID, fields map[string]string) (timerMs, corr string, problem string) {
	if fields["status"] != string(StatusWaiting) {
		return "", "", ""
	}
	raw, ok := fields["wait"]
	if !ok {
		return "", "", ""
	}
	w, err := parseStoredWait(json.RawMessage(raw))
	if err != nil {
		return "", "", err.Error()
	}
	switch w.Kind {
	case WaitKindTimer:
		timerMs = strconv.FormatInt(w.At.UnixMilli(), 10)
	case WaitKindExternalEvent:
		corr = corrMember(w.Topic, w.CorrelationID, id)
	}
	return timerMs, corr, ""
}

// checkFlow compares one flow snapshot with the invariants.
func (s *RedisStore) checkFlow(sn *flowSnap, stepRecords []string) []Problem {
	var out []Problem
	id := sn.id.String()
	flowKey := s.keys.flow(sn.id)
	shard := s.keys.shardOf(sn.id)
	add := func(kind, key, detail string) {
		out = append(out, Problem{Kind: kind, FlowID: id, Key: key, Detail: detail})
	}
	st, err := ParseFlowStatus(sn.fields["status"])
	if err != nil {
		add("bad_flow", flowKey, err.Error())
		return out
	}
	for i, other := range allStatuses {
		in := i < len(sn.scores) && sn.scores[i] != ""
		switch {
		case other == st && !in:
			add("status_index_missing", s.keys.status(shard, other), "flow is "+string(st)+" but not in its status index")
		case other != st && in:
			add("status_index_extra", s.keys.status(shard, other), "flow is "+string(st)+" but in the "+string(other)+" index")
		}
	}
	if sn.ownerScore == "" {
		add("owner_index_missing", s.keys.owner(shard, sn.fields["owner"]), "flow is not in its owner's index")
	}
	if fp, ok := sn.fields["idem"]; ok && !validFingerprint(sn.id, fp) {
		add("bad_idempotency", flowKey, "idempotency fingerprint "+strconv.Quote(fp)+" is malformed or on a flow whose id is not derived from a key")
	}
	if a, ok := sn.fields["att"]; ok {
		if n, err := strconv.Atoi(a); err != nil || n < 1 {
			add("bad_attempts", flowKey, "attempts count "+strconv.Quote(a)+" is not a positive integer")
		}
	}
	_, hasWait := sn.fields["wait"]
	switch {
	case st == StatusWaiting && !hasWait:
		add("wait_missing", flowKey, "waiting flow without wait_json")
	case st != StatusWaiting && hasWait:
		add("wait_extra", flowKey, string(st)+" flow with a wait_json")
	}
	timerMs, corr, bad := s.expectedWait(sn.id, sn.fields)
	if bad != "" {
		add("bad_wait", flowKey, bad)
	}
	switch {
	case timerMs != "" && sn.timerScore == "":
		add("timer_missing", s.keys.timers(shard), "waiting timer flow not in the timer set")
	case timerMs != "" && sn.timerScore != timerMs:
		add("timer_wrong", s.keys.timers(shard), "timer entry at "+sn.timerScore+", wait says "+timerMs)
	case timerMs == "" && sn.timerScore != "":
		add("timer_extra", s.keys.timers(shard), "flow in the timer set without a timer wait")
	}
	wantCW := st == StatusWaiting && sn.fields["cancel"] == "1"
	switch {
	case wantCW && !sn.cancelWait:
		add("cancelwait_missing", s.keys.cancelWait(shard), "waiting flow with a cancel request not in the cancel set")
	case !wantCW && sn.cancelWait:
		add("cancelwait_extra", s.keys.cancelWait(shard), "flow in the cancel set but not waiting with a cancel request")
	}
	gotCorr := sn.fields["corr"]
	switch {
	case corr != "" && (gotCorr != corr || sn.corrScore == ""):
		add("corr_missing", s.keys.corr(shard), "waiting external-event flow not in the correlation index")
	case corr == "" && gotCorr != "":
		add("corr_extra", s.keys.corr(shard), "flow keeps a correlation entry without an external-event wait")
	}
	readyKey := s.keys.ready(shard, sn.fields["controller"])
	if st == StatusRunning {
		switch {
		case sn.lease == "" && sn.readyScore == "":
			add("ready_missing", readyKey, "running flow neither leased nor on its ready queue")
		case sn.lease != "" && sn.readyScore != "":
			add("ready_extra", readyKey, "leased flow still on its ready queue")
		}
		switch {
		case sn.lease != "" && sn.leaseExp != leaseExpiry(sn.lease):
			add("lease_expiry_wrong", s.keys.leaseExp(shard), "lease expiry entry does not match the lease")
		case sn.lease == "" && sn.leaseExp != "":
			add("lease_expiry_extra", s.keys.leaseExp(shard), "expiry entry without a lease")
		}
	} else {
		if sn.readyScore != "" {
			add("ready_extra", readyKey, string(st)+" flow on a ready queue")
		}
		if sn.lease != "" || sn.leaseExp != "" {
			add("lease_extra", s.keys.leases(shard), string(st)+" flow with a lease")
		}
	}
	if sn.lastEvent == "" {
		add("events_missing", s.keys.events(sn.id), "flow has no audit event")
	} else if ev, err := decodeEvent(sn.id, 0, sn.lastEvent); err != nil {
		add("bad_event", s.keys.events(sn.id), err.Error())
	} else if strconv.FormatInt(ev.Revision, 10) != sn.fields["rev"] {
		add("event_revision", s.keys.events(sn.id), fmt.Sprintf("newest event has revision %d, flow has %s", ev.Revision, sn.fields["rev"]))
	}
	records := map[string]bool{}
	for _, r := range stepRecords {
		records[r] = true
	}
	members := map[string]bool{}
	for _, m := range sn.stepMembers {
		members[m] = true
		if !records[m] {
			add("step_missing", s.keys.step(sn.id, m), "step set names a step without a record")
		}
	}
	for _, r := range stepRecords {
		if !members[r] {
			add("step_unindexed", s.keys.step(sn.id, r), "step record not in the flow's step set")
		}
	}
	return out
}

// leaseExpiry returns the expiry field of a stored lease.
func leaseExpiry(lease string) string {
	parts := strings.SplitN(lease, "|", 3)
	if len(parts) < 2 {
		return ""
	}
	return parts[1]
}

// checkIndexes reads every index of a shard and reports entries that do
// not match a flow.
// exists says whether a flow record is there (even if unreadable, whose
// entries are not judged).
func (s *RedisStore) checkIndexes(ctx context.Context, shard int, sk *shardKeys, snaps map[uuid.UUID]*flowSnap, exists func(uuid.UUID) bool) ([]Problem, error) {
	var out []Problem
	stale := func(key, member, detail string) {
		p := Problem{Kind: "stale_index_entry", Key: key, Member: member, Detail: detail}
		if id, err := uuid.Parse(lastUUID(member)); err == nil {
			p.FlowID = id.String()
		}
		out = append(out, p)
	}
	check := func(key string, ok func(sn *flowSnap, member string) bool, detail string) error {
		want := "zset"
		switch key {
		case s.keys.leases(shard):
			want = "hash"
		case s.keys.cancelWait(shard):
			want = "set"
		}
		members, err := s.indexMembers(ctx, key, want)
		var wt wrongTypeError
		if errors.As(err, &wt) {
			out = append(out, Problem{Kind: "wrong_type", Key: key, Detail: "key is a " + string(wt) + ", not an index"})
			return nil
		}
		if err != nil {
			return err
		}
		for _, m := range members {
			id, err := uuid.Parse(lastUUID(m))
			if err != nil {
				stale(key, m, "entry does not name a flow")
				continue
			}
			sn := snaps[id]
			if sn == nil && exists(id) {
				continue // unreadable: reported once, as such
			}
			if sn == nil || !ok(sn, m) {
				stale(key, m, detail)
			}
		}
		return nil
	}
	for _, st := range allStatuses {
		st := st
		if err := check(s.keys.status(shard, st), func(sn *flowSnap, _ string) bool { return sn.fields["status"] == string(st) },
			"entry of a flow that is not "+string(st)); err != nil {
			return nil, err
		}
	}
	for _, ok := range sk.owners {
		owner := strings.TrimPrefix(ok, s.keys.tag(shard)+":owner:")
		if err := check(ok, func(sn *flowSnap, _ string) bool { return sn.fields["owner"] == owner },
			"entry of a flow of another owner, or of none"); err != nil {
			return nil, err
		}
	}
	for _, rk := range sk.readies {
		ctl := strings.TrimPrefix(rk, s.keys.tag(shard)+":ready:")
		if err := check(rk, func(sn *flowSnap, _ string) bool {
			return sn.fields["status"] == string(StatusRunning) && sn.fields["controller"] == ctl && sn.lease == ""
		}, "ready entry of a flow that is not a runnable, unleased flow of this controller"); err != nil {
			return nil, err
		}
	}
	unlisted, err := s.unlistedControllers(ctx, shard, sk.readies, out)
	if err != nil {
		return nil, err
	}
	out = append(out, unlisted...)
	for _, lk := range []string{s.keys.leases(shard), s.keys.leaseExp(shard)} {
		if err := check(lk, func(sn *flowSnap, _ string) bool { return sn.fields["status"] == string(StatusRunning) },
			"lease of a flow that is not running"); err != nil {
			return nil, err
		}
	}
	if err := check(s.keys.timers(shard), func(sn *flowSnap, _ string) bool {
		t, _, _ := s.expectedWait(sn.id, sn.fields)
		return t != ""
	}, "timer entry of a flow not waiting on a timer"); err != nil {
		return nil, err
	}
	if err := check(s.keys.cancelWait(shard), func(sn *flowSnap, _ string) bool {
		return sn.fields["status"] == string(StatusWaiting) && sn.fields["cancel"] == "1"
	}, "cancel entry of a flow not waiting with a cancel request"); err != nil {
		return nil, err
	}
	if err := check(s.keys.corr(shard), func(sn *flowSnap, m string) bool {
		_, c, _ := s.expectedWait(sn.id, sn.fields)
		return c == m
	}, "correlation entry of a flow not waiting for it"); err != nil {
		return nil, err
	}
	return out, nil
}

// lastUUID returns the last 36 bytes of an index member (index members
// end with the flow id).
func lastUUID(m string) string {
	if len(m) < 36 {
		return m
	}
	return m[len(m)-36:]
}

// wrongTypeError is an index key holding another Redis type.
type wrongTypeError string

func (w wrongTypeError) Error() string { return "wrong type " + string(w) }

// indexMembers reads every member of an index (zset, set, or hash
// fields), in batches; a key of another type is a wrongTypeError.
func (s *RedisStore) indexMembers(ctx context.Context, key, want string) ([]string, error) {
	typ, err := s.client.Type(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("taskflow: verify: %w", err)
	}
	if typ == "none" {
		return nil, nil
	}
	if typ != want {
		return nil, wrongTypeError(typ)
	}
	var out []string
	var cursor uint64
	for {
		var keys []string
		var next uint64
		switch typ {
		case "zset":
			keys, next, err = s.client.ZScan(ctx, key, cursor, "", 1000).Result()
			// ZSCAN returns member, score pairs.
			for i := 0; i < len(keys); i += 2 {
				out = append(out, keys[i])
			}
		case "set":
			keys, next, err = s.client.SScan(ctx, key, cursor, "", 1000).Result()
			out = append(out, keys...)
		case "hash":
			keys, next, err = s.client.HScan(ctx, key, cursor, "", 1000).Result()
			for i := 0; i < len(keys); i += 2 {
				out = append(out, keys[i])
			}
		default:
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("taskflow: verify: %w", err)
		}
		if next == 0 {
			return out, nil
		}
		cursor = next
	}
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
		case "stale_index_entry":
			entries, entryAt = append(entries, p), append(entryAt, i)
			continue
		case "orphan_key", "step_missing", "step_unindexed":
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
			holds[i] = p.Kind != "stale_index_entry" && p.Kind != "orphan_key" && p.Kind != "step_missing" && p.Kind != "step_unindexed"
			continue
		}
		sn := again[id]
		switch p.Kind {
		case "stale_index_entry", "orphan_key", "step_missing", "step_unindexed":
		case "unreadable_flow":
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
		return !(sn.fields["status"] == string(StatusWaiting) && sn.fields["cancel"] == "1")
	case p.Key == s.keys.corr(shard):
		_, c, _ := s.expectedWait(sn.id, sn.fields)
		return c != member
	case strings.HasPrefix(p.Key, s.keys.tag(shard)+":ready:"):
		ctl := strings.TrimPrefix(p.Key, s.keys.tag(shard)+":ready:")
		return !(sn.fields["status"] == string(StatusRunning) && sn.fields["controller"] == ctl && sn.lease == "")
	case p.Key == s.keys.leases(shard), p.Key == s.keys.leaseExp(shard):
		return sn.fields["status"] != string(StatusRunning)
	}
	return true
}

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
		case p.Kind == "unknown_key" || p.Kind == "bad_flow" || p.Kind == "bad_wait" ||
			p.Kind == "bad_event" || p.Kind == "event_revision" || p.Kind == "events_missing" ||
			p.Kind == "wait_missing" || p.Kind == "wait_extra" || p.Kind == "step_missing" ||
			p.Kind == "wrong_type" || p.Kind == "unreadable_flow" || p.Kind == "bad_idempotency" ||
			p.Kind == "bad_attempts":
			// Records are not rewritten: these need a person.
			continue
		case p.Kind == "controller_unlisted":
			if err := s.client.SAdd(ctx, p.Key, p.Member).Err(); err != nil {
				return fmt.Errorf("taskflow: repair: %w", err)
			}
		case p.Kind == "stale_index_entry" && (err != nil || s.keys.shardOf(id) != shard):
			// The entry names no flow of this shard: drop it where it is.
			if err := s.dropEntry(ctx, p.Key, p.Member); err != nil {
				return err
			}
		case err != nil:
			continue
		case p.Kind == "orphan_key":
			orphans[id] = append(orphans[id], p.Key)
		case p.Kind == "step_unindexed":
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
			if strings.HasPrefix(p.Key, s.keys.tag(shard)+":ready:") && p.Kind == "stale_index_entry" {
				f.readies = append(f.readies, p.Key)
			}
			if p.Key == s.keys.corr(shard) && p.Kind == "stale_index_entry" {
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
		calls = append(calls, scriptCall{s.scripts.deleteOrphans, append([]string{s.keys.flow(id)}, keys...), nil})
	}
	_, errs := s.runPipelined(ctx, calls)
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("taskflow: repair: %w", err)
		}
	}
	return nil
}
