package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/observe"
)

// The engine's tick: due timers, cancel requests of waiting flows and
// expired leases, in rounds of one pipeline per shard group.

// maxTickRounds bounds one tick: at most this many rounds, each taking
// at most one batch of each index from every shard.
const maxTickRounds = 1000

// TickReport counts what one tick did. Scanned is Resumed + Cancelled +
// StillWaiting + Errors: StillWaiting is the number of waiting flows after
// the tick (read from the status indexes, not by visiting flows).
type TickReport struct {
	Scanned      int `json:"scanned"`
	Resumed      int `json:"resumed"`
	Cancelled    int `json:"cancelled"`
	StillWaiting int `json:"still_waiting"`
	Errors       int `json:"errors"`
	// LeasesExpired counts leases that ran out (their worker died or
	// stalled): their running flows went back on the ready queues. Not
	// part of Scanned.
	LeasesExpired int `json:"leases_expired"`
	// Dropped counts index entries (timers, cancel requests, lease
	// expiries) the tick could not act on and removed from their index:
	// the flow is gone, no longer needs the entry, lives in another
	// shard, or cannot be read (the last also counts in Errors; Verify
	// reports such a flow). Not part of Scanned.
	Dropped int `json:"dropped"`
	// Truncated is true when the tick stopped after 1000 rounds
	// with entries still due, or after 10 batches of due schedules with
	// more due; the next tick takes them.
	Truncated bool `json:"truncated,omitempty"`
	// EarlyRedriven counts kept events whose delivery to a waiting flow
	// was claimed but not finished in time (the claimer died or stalled)
	// and that this tick finished. Not part of Scanned.
	EarlyRedriven int `json:"early_redriven"`
	// Fired and Skipped count the schedule fires the tick made (a flow
	// each) and skipped (Manager.CreateSchedule's overlap and catch-up
	// policies). Not part of Scanned.
	Fired   int `json:"fired"`
	Skipped int `json:"skipped"`
	// Relayed counts relay entries the tick drove: outcomes of children
	// delivered to their parents, parents' children closed, left by a
	// call that died or failed before it did so itself
	// (Manager.StartChild). Not part of Scanned.
	Relayed int `json:"relayed"`
	// SlotsRepaired counts admissions of the gate (gate.go) whose lease
	// expiry passed that the tick settled: slots of an ended lease given
	// back, a flow admitted by a process that died before leasing it put
	// back on its lane, slots of a lease extended behind it moved.
	SlotsRepaired int `json:"slots_repaired"`
	// Err is the first error met, nil when none.
	Err error `json:"-"`
}

func (r *TickReport) fail(err error) {
	r.Errors++
	if r.Err == nil {
		r.Err = err
	}
}

// Tick runs one tick at the store's current time.
func (e *WaitEngine) Tick(ctx context.Context) TickReport {
	now, _ := e.s.clock()
	return e.TickAt(ctx, now)
}

// TickAt runs one tick as if the time were now: waiting flows with a
// cancel request are cancelled, then timers due at now resume (a
// cancel-requested one is cancelled instead), expired leases end, and
// due schedules fire (at most 10 batches of them).
// External-event and manual waits are left alone. Index entries the tick
// cannot act on are removed (TickReport.Dropped), so a tick always ends,
// after at most 1000 rounds.
func (e *WaitEngine) TickAt(ctx context.Context, now time.Time) (rep TickReport) {
	if o := e.s.obs; o != nil && o.Tick != nil {
		defer observeTick(ctx, o, time.Now(), &rep)
	}
	if err := e.s.checkLayout(ctx); err != nil {
		rep.fail(err)
		return rep
	}
	now = now.UTC().Truncate(time.Millisecond)
	nowMs := strconv.FormatInt(now.UnixMilli(), 10)
	// Visit shards from a random start so engines ticking at once
	// mostly work on different shards.
	shards := make([]int, e.s.keys.shards)
	start := rand.IntN(len(shards))
	for i := range shards {
		shards[i] = (start + i) % len(shards)
	}
	active := shards
	for round := 0; len(active) > 0 && ctx.Err() == nil; round++ {
		if round == maxTickRounds {
			rep.Truncated = true
			break
		}
		active = e.tickRound(ctx, active, nowMs, &rep)
	}
	switch {
	case rep.Dropped > 0 && rep.Err != nil:
		e.log.Warn("taskflow: tick dropped index entries it could not act on", "dropped", rep.Dropped, "first_err", rep.Err)
	case rep.Dropped > 0:
		// Entries of flows another engine handled or a prune removed
		// meanwhile: a normal race, not a warning.
		e.log.Debug("taskflow: tick dropped stale index entries", "dropped", rep.Dropped)
	}
	if err := ctx.Err(); err != nil && rep.Err == nil {
		rep.fail(err)
	}
	waiting, err := e.s.countIndex(ctx, func(shard int) string { return e.s.keys.status(shard, StatusWaiting) })
	if err != nil {
		rep.fail(err)
	}
	rep.StillWaiting = waiting
	// What a step did before one of its entries failed is counted: the
	// work is done, whatever the error.
	n, err := e.redriveEarly(ctx, nowMs)
	rep.EarlyRedriven = n
	if err != nil {
		rep.fail(err)
	}
	var schedHead *redis.ZSliceCmd
	var admDue *redis.StringSliceCmd
	n, err = e.s.relayDue(ctx, nowMs, e.batch, func(p redis.Pipeliner) {
		schedHead = p.ZRangeWithScores(ctx, e.s.keys.schedDue(), 0, 0)
		admDue = p.ZRangeByScore(ctx, e.s.keys.gateAdmissions(), &redis.ZRangeBy{Min: "-inf", Max: nowMs, Count: int64(e.batch)})
	})
	rep.Relayed = n
	if err != nil {
		rep.fail(err)
	}
	n, err = e.s.gateRepair(ctx, nowMs, admDue.Val())
	rep.SlotsRepaired = n
	if err != nil {
		rep.fail(err)
	}
	if err := schedHead.Err(); err != nil && !errors.Is(err, redis.Nil) {
		rep.fail(fmt.Errorf("taskflow: tick: schedules: %w", err))
	} else {
		e.tickSchedules(ctx, now, schedHead.Val(), &rep)
	}
	rep.Scanned = rep.Resumed + rep.Cancelled + rep.StillWaiting + rep.Errors
	return rep
}

// tickRound reads one batch of due timers and cancel requests from each
// active shard in one pipeline, handles them in a second, and returns the
// shards that may have more. Every entry it reads either is acted on
// (which removes it from its index), or leaves its index as one the tick
// cannot act on (counted in Dropped), or meets a transient error (the
// shard then rests until the next tick): a shard is visited again only
// when its whole batch moved, so a round always makes progress or ends.
func (e *WaitEngine) tickRound(ctx context.Context, shards []int, nowMs string, rep *TickReport) []int {
	pipe := e.s.client.Pipeline()
	cancels := make([]*redis.StringSliceCmd, len(shards))
	timers := make([]*redis.StringSliceCmd, len(shards))
	leases := make([]*redis.StringSliceCmd, len(shards))
	for i, sh := range shards {
		cancels[i] = pipe.SRandMemberN(ctx, e.s.keys.cancelWait(sh), int64(e.batch))
		timers[i] = pipe.ZRangeByScore(ctx, e.s.keys.timers(sh), &redis.ZRangeBy{
			Min: "-inf", Max: nowMs, Count: int64(e.batch),
		})
		leases[i] = pipe.ZRangeByScore(ctx, e.s.keys.leaseExp(sh), &redis.ZRangeBy{
			Min: "-inf", Max: nowMs, Count: int64(e.batch),
		})
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		var rerr redis.Error
		if !errors.As(err, &rerr) {
			rep.fail(fmt.Errorf("taskflow: tick: %w", err))
			return nil
		}
		// An index key of the wrong type (written by hand) reads as
		// empty and is reported; the other indexes are worked on.
		for _, cmds := range [][]*redis.StringSliceCmd{cancels, timers, leases} {
			for _, c := range cmds {
				if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
					rep.fail(fmt.Errorf("taskflow: tick: %s: %w", c.Args()[1], err))
				}
			}
		}
	}
	owned, err := e.lockShards(ctx, shards, func(i int) bool {
		return len(cancels[i].Val())+len(timers[i].Val())+len(leases[i].Val()) > 0
	})
	if err != nil {
		rep.fail(err)
		return nil
	}
	defer e.unlockShards(ctx, owned)
	var calls []scriptCall
	var entries, drops, suspect []tickEntry
	read := map[int]int{} // entries read per shard
	for i, sh := range shards {
		if !owned[sh] {
			continue
		}
		for _, x := range []struct {
			kind entryKind
			raw  []string
			call func(uuid.UUID) scriptCall
		}{
			{entryLease, leases[i].Val(), func(id uuid.UUID) scriptCall {
				return scriptCall{e.s.scripts.expireLease, e.s.keys.flowKeys(id, ""), e.s.head(id, nowMs, mutation{lean: true})}
			}},
			{entryCancel, cancels[i].Val(), func(id uuid.UUID) scriptCall { return e.cancelCall(id, nowMs) }},
			{entryTimer, timers[i].Val(), func(id uuid.UUID) scriptCall { return e.timerCall(id, nowMs) }},
		} {
			if len(x.raw) == e.batch {
				read[sh] += len(x.raw) // a full batch: the shard may have more
			}
			for _, raw := range x.raw {
				ent := tickEntry{kind: x.kind, shard: sh, raw: raw}
				id, ok := e.entryFlow(ent)
				if !ok {
					drops = append(drops, ent) // names no flow of this shard
					continue
				}
				calls = append(calls, x.call(id))
				entries = append(entries, ent)
			}
		}
	}
	if len(calls)+len(drops) == 0 {
		return nil
	}
	kinds := make([]entryKind, len(entries))
	for i, ent := range entries {
		kinds[i] = ent.kind
	}
	vals, errs := e.s.runPipelined(ctx, calls, e.tickMetas(kinds)...)
	moved := map[int]int{} // entries that left their index, per shard
	for i, err := range errs {
		ent := entries[i]
		id, _ := uuid.Parse(ent.raw)
		if err != nil {
			err = scriptError(err, id)
		}
		switch {
		case err == nil && ent.kind == entryLease:
			moved[ent.shard]++
			rep.LeasesExpired++
		case err == nil:
			moved[ent.shard]++
			f, derr := decodeReply(id, vals[i])
			switch {
			case derr != nil:
				rep.fail(derr)
			case f.Status == StatusCancelled:
				rep.Cancelled++
				e.s.relayEnded(ctx, f)
			default:
				rep.Resumed++
			}
		case errors.Is(err, errStaleEntry):
			// The script dropped an entry that named no flow to act on.
			moved[ent.shard]++
			rep.Dropped++
		case errors.Is(err, errNoMatch), errors.Is(err, ErrNotFound),
			errors.Is(err, ErrAlreadyTerminal), errors.Is(err, ErrIllegalTransition):
			// Another engine got there first, or the flow moved on.
			moved[ent.shard]++
		case errors.Is(err, ErrInvalidData) && ent.kind == entryTimer:
			// An unreadable wait: the script dropped its entry.
			moved[ent.shard]++
			rep.Dropped++
			rep.fail(err)
		case transientError(err):
			// Redis is busy, full or away: leave the entry for a later
			// tick and rest the shard.
			rep.fail(err)
		default:
			// The script cannot act on this flow: a record of the wrong
			// type, a field it cannot read, or an index of the shard of
			// the wrong type (see below).
			rep.fail(err)
			suspect = append(suspect, ent)
		}
	}
	// An entry whose flow's data is at fault is dropped so it cannot
	// stall the shard (Verify reports the flow); in a shard with an index
	// of the wrong type every script fails, so nothing is dropped there.
	if len(suspect) > 0 {
		sound := e.soundShards(ctx, suspect, rep)
		for _, ent := range suspect {
			if sound[ent.shard] {
				drops = append(drops, ent)
			}
		}
	}
	for sh, n := range e.dropEntries(ctx, drops, rep) {
		moved[sh] += n
	}
	var more []int
	for _, sh := range shards {
		if read[sh] > 0 && moved[sh] > 0 {
			more = append(more, sh)
		}
	}
	return more
}

// tickLockTTL bounds how long a dead engine's shard lock stalls the others.
const tickLockTTL = 5 * time.Second

// lockShards takes, for the shards that have work (has(i) for shards[i]),
// a short per-shard lock so that engines ticking at once work on
// different shards instead of racing for the same entries. The lock only
// saves work: every resume re-checks its flow, so correctness never
// depends on it. It returns the shards this engine may work on.
func (e *WaitEngine) lockShards(ctx context.Context, shards []int, has func(i int) bool) (map[int]bool, error) {
	pipe := e.s.client.Pipeline()
	cmds := map[int]*redis.BoolCmd{}
	for i, sh := range shards {
		if has(i) {
			cmds[sh] = pipe.SetNX(ctx, e.s.keys.tickLock(sh), e.name, tickLockTTL)
		}
	}
	owned := map[int]bool{}
	if len(cmds) == 0 {
		return owned, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("taskflow: tick lock: %w", err)
	}
	for sh, c := range cmds {
		owned[sh] = c.Val()
	}
	return owned, nil
}

// unlockShards releases this engine's shard locks.
func (e *WaitEngine) unlockShards(ctx context.Context, owned map[int]bool) {
	var keys []string
	for sh, ok := range owned {
		if ok {
			keys = append(keys, e.s.keys.tickLock(sh))
		}
	}
	if len(keys) == 0 {
		return
	}
	pipe := e.s.client.Pipeline()
	for _, k := range keys {
		pipe.Del(ctx, k) // one per key: they live in different slots
	}
	_, _ = pipe.Exec(ctx)
}

func (e *WaitEngine) timerCall(id uuid.UUID, nowMs string) scriptCall {
	r := transitionReq{
		id: id, from: StatusWaiting, to: StatusRunning, kind: EventResumed,
		payload: json.RawMessage(`{"state_patch":null}`), guard: "timer",
	}
	r.mut.lean = true // the tick reads the status only
	return scriptCall{e.s.scripts.transition, e.s.keys.flowKeys(id, ""), e.s.transitionArgs(r, nowMs)}
}

func (e *WaitEngine) cancelCall(id uuid.UUID, nowMs string) scriptCall {
	return scriptCall{e.s.scripts.tickCancel, e.s.keys.flowKeys(id, ""), e.s.head(id, nowMs, mutation{lean: true})}
}

// tickEntry is one member of a shard index the tick read.
type tickEntry struct {
	kind  entryKind
	shard int
	raw   string
}

// entryFlow returns the flow an entry names, and false when it names none
// of this shard: not a UUID in its canonical form (a script would remove
// the canonical form and leave the entry), or a flow of another shard
// (whose script would work on the other shard's index).
func (e *WaitEngine) entryFlow(ent tickEntry) (uuid.UUID, bool) {
	id, err := uuid.Parse(ent.raw)
	if err != nil || id.String() != ent.raw || e.s.keys.shardOf(id) != ent.shard {
		return uuid.Nil, false
	}
	return id, true
}

// indexKey is the index an entry came from.
func (e *WaitEngine) indexKey(ent tickEntry) string {
	switch ent.kind {
	case entryCancel:
		return e.s.keys.cancelWait(ent.shard)
	case entryLease:
		return e.s.keys.leaseExp(ent.shard)
	default:
		return e.s.keys.timers(ent.shard)
	}
}

// dropEntries removes entries from their indexes in one pipeline, counts
// them in rep.Dropped and returns how many left each shard's indexes.
func (e *WaitEngine) dropEntries(ctx context.Context, drops []tickEntry, rep *TickReport) map[int]int {
	out := map[int]int{}
	if len(drops) == 0 {
		return out
	}
	pipe := e.s.client.Pipeline()
	cmds := make([]*redis.IntCmd, len(drops))
	for i, ent := range drops {
		if ent.kind == entryCancel {
			cmds[i] = pipe.SRem(ctx, e.indexKey(ent), ent.raw)
		} else {
			cmds[i] = pipe.ZRem(ctx, e.indexKey(ent), ent.raw)
		}
	}
	_, _ = pipe.Exec(ctx)
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			rep.fail(err)
			continue
		}
		// Gone already (another engine) is progress too.
		out[drops[i].shard]++
		rep.Dropped += int(c.Val())
	}
	return out
}

// soundShards reports, for the shards of entries, whether every index
// the flow scripts touch has its type (or does not exist). Each unsound
// shard is reported once in rep.
func (e *WaitEngine) soundShards(ctx context.Context, entries []tickEntry, rep *TickReport) map[int]bool {
	want := func(key string, shard int) string {
		switch key {
		case e.s.keys.cancelWait(shard):
			return "set"
		case e.s.keys.leases(shard):
			return "hash"
		}
		return "zset"
	}
	out := map[int]bool{}
	pipe := e.s.client.Pipeline()
	types := map[int]map[string]*redis.StatusCmd{}
	for _, ent := range entries {
		if types[ent.shard] != nil {
			continue
		}
		types[ent.shard] = map[string]*redis.StatusCmd{}
		fixed := e.s.keys.fixed[ent.shard]
		for _, key := range fixed[:len(fixed)-1] { // the last is the shard base, not a key
			types[ent.shard][key] = pipe.Type(ctx, key)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		rep.fail(fmt.Errorf("taskflow: tick: %w", err))
		return out
	}
	for shard, keys := range types {
		out[shard] = true
		for key, c := range keys {
			if typ := c.Val(); typ != "none" && typ != want(key, shard) {
				out[shard] = false
				rep.fail(fmt.Errorf("taskflow: tick: %s is a %s, not a %s: the shard's entries stay until it is fixed", key, typ, want(key, shard)))
				break
			}
		}
	}
	return out
}

// transientError reports an error that says nothing about the entry: the
// connection, the context, or a server that is busy, full, loading or
// changing roles. Any other error reply of a tick script is about the
// flow's data.
func transientError(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return true
	}
	msg := rerr.Error()
	for _, p := range []string{"OOM", "BUSY", "LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN",
		"TRYAGAIN", "NOSCRIPT", "NOREPLICAS", "MISCONF", "MOVED", "ASK", "EXECABORT", "ERR max number of clients"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// entryKind says which index a tick entry came from.
type entryKind int

const (
	entryCancel entryKind = iota
	entryTimer
	entryLease
)

// tickMetas describes a tick's script runs to the observer (nil when
// script runs are not observed).
func (e *WaitEngine) tickMetas(kinds []entryKind) []opMeta {
	if !e.s.observing() {
		return nil
	}
	out := make([]opMeta, len(kinds))
	for i, k := range kinds {
		switch k {
		case entryTimer:
			out[i] = opMeta{event: EventResumed, waitKind: string(WaitKindTimer)}
		case entryCancel:
			out[i] = opMeta{event: EventCancelled}
		}
	}
	return out
}

// observeTick hands a finished tick's report to the observer.
func observeTick(ctx context.Context, o *observe.Observer, start time.Time, rep *TickReport) {
	o.Tick(ctx, observe.Tick{Scanned: rep.Scanned, Resumed: rep.Resumed, Cancelled: rep.Cancelled,
		StillWaiting: rep.StillWaiting, Errors: rep.Errors, LeasesExpired: rep.LeasesExpired,
		Dropped: rep.Dropped, Truncated: rep.Truncated, EarlyRedriven: rep.EarlyRedriven, Relayed: rep.Relayed,
		Fired: rep.Fired, Skipped: rep.Skipped, Err: rep.Err,
		Start: start, Duration: time.Since(start)})
}
