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

	"github.com/taskflow-dev/taskflow/fsck"
)

// The rules Verify checks a shard against: what a flow's record implies
// for its own keys and for every index of its shard, the controllers set
// of the ready queues, and the keys of kept early events and their claims
// (package fsck names each kind of problem).

// expectedWait returns the timer deadline and correlation member a flow's
// record implies, and a problem when its wait is unreadable.
func (s *RedisStore) expectedWait(id uuid.UUID, fields map[string]string) (timerMs, corr string, problem string) {
	if !FlowStatus(fields["status"]).waits() {
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
	case WaitKindChildren:
		if !w.At.IsZero() { // a join's deadline
			timerMs = strconv.FormatInt(w.At.UnixMilli(), 10)
		}
	case WaitKindExternalEvent:
		corr = corrMember(w.Topic, w.CorrelationID, id)
	}
	return timerMs, corr, ""
}

// checkFlow compares one flow snapshot with the invariants.
func (s *RedisStore) checkFlow(sn *flowSnap, stepRecords []string) []fsck.Problem {
	var out []fsck.Problem
	id := sn.id.String()
	flowKey := s.keys.flow(sn.id)
	shard := s.keys.shardOf(sn.id)
	add := func(kind fsck.Kind, key, detail string) {
		out = append(out, fsck.Problem{Kind: kind, FlowID: id, Key: key, Detail: detail})
	}
	st, err := ParseFlowStatus(sn.fields["status"])
	if err != nil {
		add(fsck.BadFlow, flowKey, err.Error())
		return out
	}
	for i, other := range allStatuses {
		in := i < len(sn.scores) && sn.scores[i] != ""
		switch {
		case other == st && !in:
			add(fsck.StatusIndexMissing, s.keys.status(shard, other), "flow is "+string(st)+" but not in its status index")
		case other != st && in:
			add(fsck.StatusIndexExtra, s.keys.status(shard, other), "flow is "+string(st)+" but in the "+string(other)+" index")
		}
	}
	if sn.ownerScore == "" {
		add(fsck.OwnerIndexMissing, s.keys.owner(shard, sn.fields["owner"]), "flow is not in its owner's index")
	}
	if sn.ctlScore == "" && sn.fields["controller"] != "" { // a flow without a controller is in no controller's index
		add(fsck.FindIndexMissing, s.keys.controllerIndex(shard, sn.fields["controller"]), "flow is not in its controller's index")
	}
	for _, name := range sortedNames(sn.attrScores) {
		if sn.attrScores[name] == "" {
			add(fsck.FindIndexMissing, s.keys.attr(shard, name, sn.fields[attrFieldPrefix+name]), "flow is not in the index of its attribute "+name)
		}
	}
	if fp, ok := sn.fields["idem"]; ok && !validFingerprint(sn.id, fp) {
		add(fsck.BadIdempotency, flowKey, "idempotency fingerprint "+strconv.Quote(fp)+" is malformed or on a flow whose id is not derived from a key")
	}
	if a, ok := sn.fields["att"]; ok {
		if n, err := strconv.Atoi(a); err != nil || n < 1 {
			add(fsck.BadAttempts, flowKey, "attempts count "+strconv.Quote(a)+" is not a positive integer")
		}
	}
	_, hasWait := sn.fields["wait"]
	switch {
	case st.waits() && !hasWait:
		add(fsck.WaitMissing, flowKey, "waiting flow without wait_json")
	case !st.waits() && hasWait:
		add(fsck.WaitExtra, flowKey, string(st)+" flow with a wait_json")
	}
	timerMs, corr, bad := s.expectedWait(sn.id, sn.fields)
	if bad != "" {
		add(fsck.BadWait, flowKey, bad)
	}
	switch {
	case timerMs != "" && sn.timerScore == "":
		add(fsck.TimerMissing, s.keys.timers(shard), "waiting timer flow not in the timer set")
	case timerMs != "" && sn.timerScore != timerMs:
		add(fsck.TimerWrong, s.keys.timers(shard), "timer entry at "+sn.timerScore+", wait says "+timerMs)
	case timerMs == "" && sn.timerScore != "":
		add(fsck.TimerExtra, s.keys.timers(shard), "flow in the timer set without a timer wait")
	}
	wantCW := st.waits() && sn.fields["cancel"] == "1"
	switch {
	case wantCW && !sn.cancelWait:
		add(fsck.CancelWaitMissing, s.keys.cancelWait(shard), "waiting flow with a cancel request not in the cancel set")
	case !wantCW && sn.cancelWait:
		add(fsck.CancelWaitExtra, s.keys.cancelWait(shard), "flow in the cancel set but not waiting with a cancel request")
	}
	gotCorr := sn.fields["corr"]
	switch {
	case corr != "" && (gotCorr != corr || sn.corrScore == ""):
		add(fsck.CorrMissing, s.keys.corr(shard), "waiting external-event flow not in the correlation index")
	case corr == "" && gotCorr != "":
		add(fsck.CorrExtra, s.keys.corr(shard), "flow keeps a correlation entry without an external-event wait")
	}
	readyKey := s.keys.ready(shard, sn.fields["controller"])
	// A flow with concurrency keys or a priority waits in the gate's
	// lane, never on its shard's queue (checkGateQueued checks the lane).
	gated := sn.fields["gk"] != ""
	if st.runnable() {
		switch {
		case sn.lease == "" && sn.readyScore == "" && !gated:
			add(fsck.ReadyMissing, readyKey, "running flow neither leased nor on its ready queue")
		case sn.lease != "" && sn.readyScore != "":
			add(fsck.ReadyExtra, readyKey, "leased flow still on its ready queue")
		case gated && sn.readyScore != "":
			add(fsck.ReadyExtra, readyKey, "flow with concurrency keys or a priority on its shard's ready queue: a claim there would bypass the gate")
		}
		switch {
		case sn.lease != "" && sn.leaseExp != leaseExpiry(sn.lease):
			add(fsck.LeaseExpiryWrong, s.keys.leaseExp(shard), "lease expiry entry does not match the lease")
		case sn.lease == "" && sn.leaseExp != "":
			add(fsck.LeaseExpiryExtra, s.keys.leaseExp(shard), "expiry entry without a lease")
		}
	} else {
		if sn.readyScore != "" {
			add(fsck.ReadyExtra, readyKey, string(st)+" flow on a ready queue")
		}
		if sn.lease != "" || sn.leaseExp != "" {
			add(fsck.LeaseExtra, s.keys.leases(shard), string(st)+" flow with a lease")
		}
	}
	if sn.lastEvent == "" {
		add(fsck.EventsMissing, s.keys.events(sn.id), "flow has no audit event")
	} else if ev, err := decodeEvent(sn.id, 0, sn.lastEvent); err != nil {
		add(fsck.BadEvent, s.keys.events(sn.id), err.Error())
	} else if strconv.FormatInt(ev.Revision, 10) != sn.fields["rev"] {
		add(fsck.EventRevision, s.keys.events(sn.id), fmt.Sprintf("newest event has revision %d, flow has %s", ev.Revision, sn.fields["rev"]))
	}
	records := map[string]bool{}
	for _, r := range stepRecords {
		records[r] = true
	}
	members := map[string]bool{}
	for _, m := range sn.stepMembers {
		members[m] = true
		if !records[m] {
			add(fsck.StepMissing, s.keys.step(sn.id, m), "step set names a step without a record")
		}
	}
	for _, r := range stepRecords {
		if !members[r] {
			add(fsck.StepUnindexed, s.keys.step(sn.id, r), "step record not in the flow's step set")
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
func (s *RedisStore) checkIndexes(ctx context.Context, shard int, sk *shardKeys, snaps map[uuid.UUID]*flowSnap, exists func(uuid.UUID) bool) ([]fsck.Problem, error) {
	var out []fsck.Problem
	stale := func(key, member, detail string) {
		p := fsck.Problem{Kind: fsck.StaleIndexEntry, Key: key, Member: member, Detail: detail}
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
			out = append(out, fsck.Problem{Kind: fsck.WrongType, Key: key, Detail: "key is a " + string(wt) + ", not an index"})
			return nil
		}
		if err != nil {
			return err
		}
		for _, m := range members {
			if key == s.keys.leases(shard) && strings.HasPrefix(m, leaseTokenField) {
				continue // a lease's claim memory: checkLeaseTokens
			}
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
	for _, fk := range sk.finds {
		if err := check(fk, func(sn *flowSnap, _ string) bool { return s.inFindIndex(shard, fk, sn) },
			"entry of a flow of another controller, or without that attribute value"); err != nil {
			return nil, err
		}
	}
	for _, rk := range sk.readies {
		ctl := strings.TrimPrefix(rk, s.keys.tag(shard)+":ready:")
		if err := check(rk, func(sn *flowSnap, _ string) bool {
			return FlowStatus(sn.fields["status"]).runnable() && sn.fields["controller"] == ctl && sn.lease == ""
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
		if err := check(lk, func(sn *flowSnap, _ string) bool { return FlowStatus(sn.fields["status"]).runnable() },
			"lease of a flow that is not running"); err != nil {
			return nil, err
		}
	}
	tokens, err := s.checkLeaseTokens(ctx, shard, snaps, exists)
	if err != nil {
		return nil, err
	}
	out = append(out, tokens...)
	if err := check(s.keys.timers(shard), func(sn *flowSnap, _ string) bool {
		t, _, _ := s.expectedWait(sn.id, sn.fields)
		return t != ""
	}, "timer entry of a flow not waiting on a timer"); err != nil {
		return nil, err
	}
	if err := check(s.keys.cancelWait(shard), func(sn *flowSnap, _ string) bool {
		return FlowStatus(sn.fields["status"]).waits() && sn.fields["cancel"] == "1"
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

// leaseTokenField starts the fields of a shard's leases hash that are
// claim memories, 't:<token>' -> the flow id leased under that token
// (lua/include/queues.lua lease_token_field): a flow id never starts so.
const leaseTokenField = "t:"

// leaseToken is the token of a lease entry "<token>|<expiry ms>|<worker>".
func leaseToken(lease string) string {
	token, _, _ := strings.Cut(lease, "|")
	return token
}

// checkLeaseTokens reports the claim memories of a shard's leases hash
// that outlived their lease: a field 't:<token>' whose flow is gone or
// holds no lease with that token. Each lease's own script deletes it with
// the lease, so one is left only by a hand edit or by a release of the
// library from before the field, sharing the flow space during a rolling
// deploy; left alone, they would never go.
func (s *RedisStore) checkLeaseTokens(ctx context.Context, shard int, snaps map[uuid.UUID]*flowSnap, exists func(uuid.UUID) bool) ([]fsck.Problem, error) {
	key := s.keys.leases(shard)
	var out []fsck.Problem
	var cursor uint64
	for {
		pairs, next, err := s.client.HScan(ctx, key, cursor, leaseTokenField+"*", 1000).Result()
		if err != nil {
			if strings.HasPrefix(err.Error(), "WRONGTYPE") {
				return nil, nil // reported with the lease entries
			}
			return nil, fmt.Errorf("taskflow: verify: %w", err)
		}
		for i := 0; i+1 < len(pairs); i += 2 {
			field, raw := pairs[i], pairs[i+1]
			p := fsck.Problem{Kind: fsck.StaleIndexEntry, Key: key, Member: field,
				Detail: "claim memory of a lease that ended"}
			id, err := uuid.Parse(raw)
			if err == nil {
				p.FlowID = id.String()
				if sn := snaps[id]; sn == nil && exists(id) || sn != nil && leaseToken(sn.lease) == strings.TrimPrefix(field, leaseTokenField) {
					continue // unreadable (reported as such), or the flow's live lease
				}
			}
			out = append(out, p)
		}
		if next == 0 {
			return out, nil
		}
		cursor = next
	}
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

// unlistedControllers reports the ready queues of a shard whose
// controller is missing from the shard's controllers set (a flow space
// written before the set existed): Stats cannot see them. Verify's
// repair adds them. A queue holding only stale entries (found is what
// the index check reported) is not reported: repair empties it.
func (s *RedisStore) unlistedControllers(ctx context.Context, shard int, readies []string, found []fsck.Problem) ([]fsck.Problem, error) {
	if len(readies) == 0 {
		return nil, nil
	}
	stale := map[string]int64{}
	for _, p := range found {
		if p.Kind == fsck.StaleIndexEntry {
			stale[p.Key]++
		}
	}
	key := s.keys.controllers(shard)
	listed, err := s.client.SMembers(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("taskflow: verify: %w", err)
	}
	known := make(map[string]bool, len(listed))
	for _, c := range listed {
		known[c] = true
	}
	var out []fsck.Problem
	for _, rk := range readies {
		ctl := strings.TrimPrefix(rk, s.keys.tag(shard)+":ready:")
		if known[ctl] {
			continue
		}
		n, err := s.client.ZCard(ctx, rk).Result()
		if err != nil {
			return nil, fmt.Errorf("taskflow: verify: %w", err)
		}
		if n > stale[rk] {
			out = append(out, fsck.Problem{Kind: fsck.ControllerUnlisted, Key: key, Member: ctl,
				Detail: "ready queue " + rk + " is not in the shard's controllers set: Stats does not see it"})
		}
	}
	return out, nil
}

// checkEarly checks one shard's early events and claims (early.go): every
// early-event list is a list with a TTL (else it would never go away) and
// readable entries, a pair's list lives on the pair's rendezvous shard,
// and every claim is readable and has its due entry, and the reverse.
// Problems: wrong_type, early_no_ttl, bad_early_event, early_wrong_shard,
// bad_claim, claim_unindexed, stale_index_entry. Verify does not repair
// them: an expired list goes by itself, and the tick settles claims.
func (s *RedisStore) checkEarly(ctx context.Context, shard int, keys []string) ([]fsck.Problem, error) {
	var out []fsck.Problem
	tag := s.keys.tag(shard) + ":"
	for _, key := range keys {
		pipe := s.client.Pipeline()
		typ := pipe.Type(ctx, key)
		ttl := pipe.PTTL(ctx, key)
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("taskflow: verify: %w", err)
		}
		switch typ.Val() {
		case "none":
			continue // expired meanwhile
		case "list":
		default:
			out = append(out, fsck.Problem{Kind: fsck.WrongType, Key: key, Detail: "key is a " + typ.Val() + ", not a list of kept events"})
			continue
		}
		if ttl.Val() < 0 {
			out = append(out, fsck.Problem{Kind: fsck.EarlyNoTTL, Key: key, Detail: "kept events without a TTL never go away"})
		}
		kind, rest, _ := strings.Cut(strings.TrimPrefix(key, tag), ":")
		var flowID string
		if kind == "mbox" && s.keys.rendezvous(rest) != shard {
			out = append(out, fsck.Problem{Kind: fsck.EarlyWrongShard, Key: key, Detail: "a pair's early-event list outside its rendezvous shard is never read"})
		}
		if kind == "inbox" {
			id, err := uuid.Parse(rest)
			if err != nil || s.keys.shardOf(id) != shard {
				out = append(out, fsck.Problem{Kind: fsck.EarlyWrongShard, Key: key, Detail: "a flow's early-event list that names no flow of this shard is never read"})
			} else {
				flowID = " of flow " + id.String()
			}
		}
		entries, err := s.client.LRange(ctx, key, 0, -1).Result()
		if err != nil {
			return nil, fmt.Errorf("taskflow: verify: %w", err)
		}
		for _, e := range entries {
			ok := false
			if kind == "mbox" {
				_, _, ok = parseEarlyEntry(e)
			} else {
				ok = parseEarlyFlowEntry(e)
			}
			if !ok {
				out = append(out, fsck.Problem{Kind: fsck.BadEarlyEvent, Key: key, Member: e, Detail: "unreadable kept event" + flowID})
			}
		}
	}
	pipe := s.client.TxPipeline() // one slot: a consistent view
	claims := pipe.HGetAll(ctx, s.keys.claims(shard))
	due := pipe.ZRange(ctx, s.keys.claimDue(shard), 0, -1)
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		var rerr redis.Error
		if errors.As(err, &rerr) {
			return append(out, fsck.Problem{Kind: fsck.WrongType, Key: s.keys.claims(shard), Detail: rerr.Error()}), nil
		}
		return nil, fmt.Errorf("taskflow: verify: %w", err)
	}
	indexed := map[string]bool{}
	for _, id := range due.Val() {
		indexed[id] = true
		if _, ok := claims.Val()[id]; !ok {
			out = append(out, fsck.Problem{Kind: fsck.StaleIndexEntry, Key: s.keys.claimDue(shard), Member: id, Detail: "due entry of no claim"})
		}
	}
	for id, c := range claims.Val() {
		flow, cp, _, ok := parseClaim(c)
		switch {
		case !ok || s.keys.rendezvous(cp) != shard:
			out = append(out, fsck.Problem{Kind: fsck.BadClaim, Key: s.keys.claims(shard), Member: id, Detail: "unreadable claim, or of another shard"})
		case !indexed[id]:
			out = append(out, fsck.Problem{Kind: fsck.ClaimUnindexed, Key: s.keys.claims(shard), Member: id, Detail: "claim for flow " + flow.String() + " without a due entry is never re-driven"})
		}
	}
	return out, nil
}

// parseEarlyFlowEntry checks '<event id> <deadline ms> <n> <corr prefix, n
// bytes><payload>'.
func parseEarlyFlowEntry(e string) bool {
	parts := strings.SplitN(e, " ", 4)
	if len(parts) != 4 || parts[0] == "" {
		return false
	}
	if _, err := strconv.ParseInt(parts[1], 10, 64); err != nil {
		return false
	}
	n, err := strconv.Atoi(parts[2])
	return err == nil && n >= 0 && n <= len(parts[3])
}

// checkJoins reports, for each parent of the shard that waits on its
// children, the children that keep its join from completing
// (stuckChildren).
func (s *RedisStore) checkJoins(ctx context.Context, snaps map[uuid.UUID]*flowSnap) ([]fsck.Problem, error) {
	var parents []uuid.UUID
	for id, sn := range snaps {
		if sn.fields["status"] == string(StatusWaiting) && strings.HasPrefix(sn.fields["wait"], `{"kind":"children"`) {
			parents = append(parents, id)
		}
	}
	sort.Slice(parents, func(a, b int) bool { return parents[a].String() < parents[b].String() })
	var found []fsck.Problem
	for _, id := range parents {
		ps, err := s.stuckChildren(ctx, id, nil)
		if err != nil {
			return nil, err
		}
		found = append(found, ps...)
	}
	return found, nil
}

// stuckChildren checks the children of parent without an outcome (all
// of them, or those of only): a child that is gone, that names another
// parent, or that ended with its outcome neither delivered nor left to
// the relay.
func (s *RedisStore) stuckChildren(ctx context.Context, parent uuid.UUID, only []string) ([]fsck.Problem, error) {
	kids, res := s.keys.kids(parent), s.keys.kidResults(parent)
	var found []fsck.Problem
	for from := int64(0); ; from += 500 {
		var ids []string
		if only != nil {
			if from > 0 {
				break
			}
			ids = only
		} else {
			var err error
			if ids, err = s.client.ZRange(ctx, kids, from, from+499).Result(); err != nil {
				return nil, err
			}
		}
		if len(ids) == 0 {
			break
		}
		ended, err := s.client.HMGet(ctx, res, ids...).Result()
		if err != nil {
			return nil, err
		}
		type open struct {
			id     uuid.UUID
			flow   *redis.SliceCmd
			relay  *redis.FloatCmd
			listed *redis.FloatCmd
		}
		var opens []open
		pipe := s.client.Pipeline()
		for i, raw := range ids {
			id, err := uuid.Parse(raw)
			if err != nil || ended[i] != nil {
				continue
			}
			opens = append(opens, open{id: id,
				flow:   pipe.HMGet(ctx, s.keys.flow(id), "status", "parent"),
				relay:  pipe.ZScore(ctx, s.keys.relay(s.keys.shardOf(id)), "d "+id.String()),
				listed: pipe.ZScore(ctx, kids, raw)})
		}
		if len(opens) > 0 {
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
				return nil, err
			}
		}
		for _, o := range opens {
			if o.listed.Err() != nil {
				continue // not the parent's (only), or gone meanwhile
			}
			v := o.flow.Val()
			p := fsck.Problem{FlowID: parent.String(), Key: kids, Member: o.id.String()}
			switch {
			case len(v) < 2 || v[0] == nil:
				p.Kind, p.Detail = fsck.ChildMissing, "a child of a parent waiting on its children is gone"
			case v[1] != parent.String():
				p.Kind, p.Detail = fsck.ChildElsewhere, fmt.Sprintf("a child names another parent (%v)", v[1])
			case FlowStatus(fmt.Sprint(v[0])).IsTerminal() && o.relay.Err() != nil:
				p.Kind, p.Detail = fsck.ChildUndelivered, "a child ended and its outcome will never reach its parent"
			default:
				continue
			}
			found = append(found, p)
		}
	}
	return found, nil
}

// repairChild resolves a problem stuckChildren reported by the join's
// policy: an undelivered outcome is delivered; a missing or foreign
// child counts as failed.
func (s *RedisStore) repairChild(ctx context.Context, p fsck.Problem) error {
	parent, err := uuid.Parse(p.FlowID)
	if err != nil {
		return err
	}
	child, err := uuid.Parse(p.Member)
	if err != nil {
		return err
	}
	if p.Kind == fsck.ChildUndelivered {
		_, err := s.deliverOutcome(ctx, child, nil)
		return err
	}
	out, err := marshalJSON(childOutcome{ID: child.String(), Status: StatusFailed, Error: "repair: " + p.Detail})
	if err != nil {
		return err
	}
	if err := s.deliverChild(ctx, parent, child, StatusFailed, out); err != nil {
		return fmt.Errorf("taskflow: repair: %w", err)
	}
	return nil
}

// inFindIndex reports whether the flow sn belongs in key, a controller or
// attribute index of shard (find.go).
func (s *RedisStore) inFindIndex(shard int, key string, sn *flowSnap) bool {
	rest := strings.TrimPrefix(key, s.keys.tag(shard)+":")
	if ctl, ok := strings.CutPrefix(rest, "ctl:"); ok {
		return ctl != "" && sn.fields["controller"] == ctl
	}
	if pair, ok := strings.CutPrefix(rest, "attr:"); ok {
		name, value, _ := strings.Cut(pair, "=")
		v, has := sn.fields[attrFieldPrefix+name]
		return has && v == value
	}
	return false
}
