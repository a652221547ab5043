package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// The rules Verify checks a flow against: what its record implies for
// its own keys and for every index of its shard (verify_kinds.go names
// what breaks them).

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
		add(ProblemBadFlow, flowKey, err.Error())
		return out
	}
	for i, other := range allStatuses {
		in := i < len(sn.scores) && sn.scores[i] != ""
		switch {
		case other == st && !in:
			add(ProblemStatusIndexMissing, s.keys.status(shard, other), "flow is "+string(st)+" but not in its status index")
		case other != st && in:
			add(ProblemStatusIndexExtra, s.keys.status(shard, other), "flow is "+string(st)+" but in the "+string(other)+" index")
		}
	}
	if sn.ownerScore == "" {
		add(ProblemOwnerIndexMissing, s.keys.owner(shard, sn.fields["owner"]), "flow is not in its owner's index")
	}
	if fp, ok := sn.fields["idem"]; ok && !validFingerprint(sn.id, fp) {
		add(ProblemBadIdempotency, flowKey, "idempotency fingerprint "+strconv.Quote(fp)+" is malformed or on a flow whose id is not derived from a key")
	}
	if a, ok := sn.fields["att"]; ok {
		if n, err := strconv.Atoi(a); err != nil || n < 1 {
			add(ProblemBadAttempts, flowKey, "attempts count "+strconv.Quote(a)+" is not a positive integer")
		}
	}
	_, hasWait := sn.fields["wait"]
	switch {
	case st.waits() && !hasWait:
		add(ProblemWaitMissing, flowKey, "waiting flow without wait_json")
	case !st.waits() && hasWait:
		add(ProblemWaitExtra, flowKey, string(st)+" flow with a wait_json")
	}
	timerMs, corr, bad := s.expectedWait(sn.id, sn.fields)
	if bad != "" {
		add(ProblemBadWait, flowKey, bad)
	}
	switch {
	case timerMs != "" && sn.timerScore == "":
		add(ProblemTimerMissing, s.keys.timers(shard), "waiting timer flow not in the timer set")
	case timerMs != "" && sn.timerScore != timerMs:
		add(ProblemTimerWrong, s.keys.timers(shard), "timer entry at "+sn.timerScore+", wait says "+timerMs)
	case timerMs == "" && sn.timerScore != "":
		add(ProblemTimerExtra, s.keys.timers(shard), "flow in the timer set without a timer wait")
	}
	wantCW := st.waits() && sn.fields["cancel"] == "1"
	switch {
	case wantCW && !sn.cancelWait:
		add(ProblemCancelwaitMissing, s.keys.cancelWait(shard), "waiting flow with a cancel request not in the cancel set")
	case !wantCW && sn.cancelWait:
		add(ProblemCancelwaitExtra, s.keys.cancelWait(shard), "flow in the cancel set but not waiting with a cancel request")
	}
	gotCorr := sn.fields["corr"]
	switch {
	case corr != "" && (gotCorr != corr || sn.corrScore == ""):
		add(ProblemCorrMissing, s.keys.corr(shard), "waiting external-event flow not in the correlation index")
	case corr == "" && gotCorr != "":
		add(ProblemCorrExtra, s.keys.corr(shard), "flow keeps a correlation entry without an external-event wait")
	}
	readyKey := s.keys.ready(shard, sn.fields["controller"])
	if st.runnable() {
		switch {
		case sn.lease == "" && sn.readyScore == "":
			add(ProblemReadyMissing, readyKey, "running flow neither leased nor on its ready queue")
		case sn.lease != "" && sn.readyScore != "":
			add(ProblemReadyExtra, readyKey, "leased flow still on its ready queue")
		}
		switch {
		case sn.lease != "" && sn.leaseExp != leaseExpiry(sn.lease):
			add(ProblemLeaseExpiryWrong, s.keys.leaseExp(shard), "lease expiry entry does not match the lease")
		case sn.lease == "" && sn.leaseExp != "":
			add(ProblemLeaseExpiryExtra, s.keys.leaseExp(shard), "expiry entry without a lease")
		}
	} else {
		if sn.readyScore != "" {
			add(ProblemReadyExtra, readyKey, string(st)+" flow on a ready queue")
		}
		if sn.lease != "" || sn.leaseExp != "" {
			add(ProblemLeaseExtra, s.keys.leases(shard), string(st)+" flow with a lease")
		}
	}
	if sn.lastEvent == "" {
		add(ProblemEventsMissing, s.keys.events(sn.id), "flow has no audit event")
	} else if ev, err := decodeEvent(sn.id, 0, sn.lastEvent); err != nil {
		add(ProblemBadEvent, s.keys.events(sn.id), err.Error())
	} else if strconv.FormatInt(ev.Revision, 10) != sn.fields["rev"] {
		add(ProblemEventRevision, s.keys.events(sn.id), fmt.Sprintf("newest event has revision %d, flow has %s", ev.Revision, sn.fields["rev"]))
	}
	records := map[string]bool{}
	for _, r := range stepRecords {
		records[r] = true
	}
	members := map[string]bool{}
	for _, m := range sn.stepMembers {
		members[m] = true
		if !records[m] {
			add(ProblemStepMissing, s.keys.step(sn.id, m), "step set names a step without a record")
		}
	}
	for _, r := range stepRecords {
		if !members[r] {
			add(ProblemStepUnindexed, s.keys.step(sn.id, r), "step record not in the flow's step set")
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
		p := Problem{Kind: ProblemStaleIndexEntry, Key: key, Member: member, Detail: detail}
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
			out = append(out, Problem{Kind: ProblemWrongType, Key: key, Detail: "key is a " + string(wt) + ", not an index"})
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
