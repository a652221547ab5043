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
)

// Early events.
//
// An external event that no flow waits for yet is kept, so that a flow
// that starts waiting for it a moment later (the reply raced the worker)
// is resumed at once instead of waiting forever. Two kinds of events, two
// places, each with one linearization point:
//
// An event addressed to a flow id (TryResumeExternal, a bridge message
// with flow_id) is kept in that flow's early-event list, on the flow's own shard:
// deliver_event.lua resumes the flow or keeps the event in one script,
// and SetWaiting's script (transition.lua) takes a matching kept event in
// the same script that starts the wait. Nothing can slip between them.
//
// An event known by topic and correlation id only (ResumeByCorrelation, a
// bridge message without flow_id) has no flow shard. It is kept in the
// pair's early-event list on the pair's rendezvous shard (a hash of the pair), and
// waiters stay indexed on their own shards (the correlation index). Each
// side writes its own mark, then looks for the other's:
//
//	publisher: keep the event (early_keep), then scan the correlation index
//	waiter:    start waiting (transition: indexed), then take a kept event
//
// Every Redis command is linearizable and each side waits for one reply
// before sending the next, so either the publisher's scan sees the waiter
// or the waiter's take sees the event (if the scan of the waiter's shard
// came before the waiter's index entry, the keep came before it too). An
// event leaves the pair's list only by early_take.lua, atomically, into a
// claim (event id -> flow id, due in 30 s) on the same shard: whoever
// took it owns it. A take is named by its call (a key beside the claim),
// so the take re-sent after its reply was lost answers with the event
// the first run claimed, and the call that lost the reply delivers it.
// The owner delivers it to the flow (deliver_event.lua,
// mode resume): the flow resumes with it, or refuses it when it no longer
// waits for it; the flow records the event id and its decision (fields
// mbx and mbr, see lua/include/early.lua), so a second delivery of the same claim
// (the tick re-driving a claim whose first owner is only slow) decides
// the same way. early_settle.lua then ends the claim: a used event is
// gone, and remembered as used on the pair's shard (a keep of it re-sent
// late, or a request handled again, keeps nothing); a refused one goes back to
// the head of the pair's list, and its owner scans for waiters again (a
// waiter may have looked while the event was claimed), offering it to
// one of them at random, never again to a flow that refused it (a flow
// refuses an event for good: its cancel is pending, it left its wait, it
// is gone), at most 16 times; then the caller gets errEarlyBusy and the
// event stays kept. With no other waiter the event stays kept, no error. An owner that dies leaves its claim: an engine's
// tick re-drives claims past due. So an event is applied to at most one
// flow, at most once, and is not lost while it is unexpired and a flow
// waits for it.
//
// An event a flow used, by flow id or by a claim, resumed live or taken
// from the flow's list, is also remembered on the flow's own shard, in the
// same per-shard memory of used events, as '<flow id> <event id>'
// (include/used.lua; one hash slot with the flow, so the scripts stay
// Cluster-safe, and nothing per flow for prune to delete): a copy
// delivered after the flow's records forgot it (a bridge message stored
// twice and handled after 16 more events of the flow) answers as a
// repeat: it resumes no later wait and is not kept again.
//
// Limits: the flow's records are the newest 16 of each kind, and the
// used events are remembered for WithResumeIDMemory (24 h, at most
// 100,000 per shard by default, for both kinds together), so the
// "decides the same way" holds within those bounds (a request handled
// again after its id was forgotten on the shard, and after 16 more
// events of the flow, is not recognised). Early events are bounded per pair and
// per flow (WithEarlyEvents) and by their retention, not in total: the
// memory they take is about 520 bytes times the events nobody waited for
// during the retention (README).

// Timings and names of early events.
const (
	// earlyClaimTimeout is how long a claimed event may wait for its
	// delivery before an engine's tick re-drives it.
	earlyClaimTimeout = 30 * time.Second
	// bridgeEventPrefix starts the id of an event that came through the
	// bridge in a message without a request id ("s" and the stream
	// entry's id); requestEventPrefix that of a request with an id ("r"
	// and the id); other ids are UUIDs.
	bridgeEventPrefix  = "s"
	requestEventPrefix = "r"
	// earlyRedriveEvery is how often an engine's tick looks for claims
	// past due.
	earlyRedriveEvery = 10 * time.Second
	// earlyPlaceAttempts bounds how often one placement offers an event
	// to waiters that keep leaving before it gives up (the event stays
	// kept, and the caller gets errEarlyBusy).
	earlyPlaceAttempts = 16
)

// memoryArgs are the bounds of the memory of used events, as
// deliver_event.lua and transition_early.lua take them.
func (c earlyConfig) memoryArgs() []any {
	return []any{c.remember.Milliseconds(), c.rememberCap}
}

// Outcomes of deliver_event.lua.
const (
	earlyUsed    = "used"
	earlySeen    = "seen" // used by another call before; nothing applied
	earlyRefused = "refused"
	earlyKept    = "kept"
)

// used reports an outcome of an event that resumed the flow (by this
// call or before).
func used(outcome string) bool { return outcome == earlyUsed || outcome == earlySeen }

// publishEarly handles an event by topic and correlation id when the
// store keeps early events (resume's by-correlation branch): keep it,
// then offer it to a waiting flow. It returns the flow the event resumed
// (none: an empty list), and 1 when this call's delivery resumed it.
//
// An event handled again (the bridge handing a request to it a second
// time because its first handling was cut, by a failover say) may find
// itself in a claim that handling took and never settled: it finishes
// that claim now, rather than leaving the flow to wait for the claim's
// timeout and an engine's tick. Two deliveries of one claim decide the
// same way, so this is safe beside a first owner that is only slow.
func (s *RedisStore) publishEarly(ctx context.Context, ev externalEvent) ([]*Flow, int, error) {
	cp, eventID := ev.cp, ev.id
	var repl error
	claimed, err := s.keepEarly(ctx, cp, eventID, ev.payload)
	if err = keepNotReplicated(&repl, err); err != nil {
		return nil, 0, err
	}
	if claimed {
		r := s.keys.rendezvous(cp)
		raw, err := s.client.HGet(ctx, s.keys.claims(r), eventID).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, 0, fmt.Errorf("taskflow: early event claims: %w", err)
		}
		f, _, outcome, back, err := s.finishClaim(ctx, r, eventID, raw, false)
		if err = keepNotReplicated(&repl, err); err != nil {
			return nil, 0, err
		}
		switch {
		case used(outcome) && f != nil:
			return []*Flow{f}, count(outcome == earlyUsed), repl
		case used(outcome), outcome != "" && !back:
			return []*Flow{}, 0, repl // used, or dropped (expired, the list full)
		}
		// Refused and back in its list, or settled meanwhile: offer it.
	}
	f, fresh, err := s.placeEarly(ctx, cp, eventID)
	if err == nil {
		err = repl
	}
	if f != nil {
		return []*Flow{f}, count(fresh), err
	}
	return []*Flow{}, 0, err
}

// placeEarly offers a kept event to a flow waiting for its pair, one at a
// time, until one takes it: it returns that flow (fresh: this call's
// delivery resumed it, not an earlier one's), or nil when nobody waits
// (the event stays kept) or a waiter took the event itself. A flow that
// refused the event (it left its wait since the scan, its cancel is
// pending, it is gone) refuses it for good: it is not offered the event
// again, and a scan that finds no other waiter leaves the event kept.
func (s *RedisStore) placeEarly(ctx context.Context, cp, eventID string) (f *Flow, fresh bool, err error) {
	var repl error
	refused := map[uuid.UUID]bool{}
	for attempt := 0; attempt < earlyPlaceAttempts; attempt++ {
		all, err := s.waitersOf(ctx, cp)
		if err != nil {
			return nil, false, err
		}
		ws := make([]uuid.UUID, 0, len(all))
		for _, w := range all {
			if !refused[w] {
				ws = append(ws, w)
			}
		}
		if len(ws) == 0 {
			return nil, false, repl
		}
		// Publishers racing on one pair would all offer to the same
		// first waiter: spread them.
		w := ws[rand.IntN(len(ws))]
		take := newEventID()
		_, payload, ok, err := s.takeEarly(ctx, w, cp, eventID, take)
		if err = keepNotReplicated(&repl, err); err != nil || !ok {
			return nil, false, errors.Join(err, repl) // not kept any more: its taker owns it
		}
		f, outcome, err := s.deliver(ctx, w, cp, eventID, payload, "resume", false)
		if err = keepNotReplicated(&repl, err); err != nil {
			return nil, false, err // the claim stays: an engine's tick re-drives it
		}
		back, err := s.settleEarly(ctx, cp, eventID, outcome, take)
		if used(outcome) {
			return f, outcome == earlyUsed, repl // a failed settle is re-driven; the flow has it
		}
		if err = keepNotReplicated(&repl, err); err != nil || !back {
			return nil, false, errors.Join(err, repl) // expired or the list filled: dropped
		}
		refused[w] = true
	}
	return nil, false, errEarlyBusy
}

// takeEarlyEvent is the waiter's half: f just started waiting for the pair cp;
// take a kept event of the pair, if any, and resume f with it. It returns
// the flow as persisted: running when it took an event.
func (s *RedisStore) takeEarlyEvent(ctx context.Context, f *Flow, cp string, lean bool) (*Flow, error) {
	var repl error
	take := newEventID()
	eventID, payload, ok, err := s.takeEarly(ctx, f.ID, cp, "", take)
	if err = keepNotReplicated(&repl, err); err != nil {
		return nil, fmt.Errorf("%w (flow %s is waiting; Manager.TakeEarlyEvent retries)", err, f.ID)
	}
	if !ok {
		return f, repl
	}
	g, outcome, err := s.deliver(ctx, f.ID, cp, eventID, payload, "resume", lean)
	if err = keepNotReplicated(&repl, err); err != nil {
		return nil, err // the claim stays: an engine's tick re-drives it
	}
	back, err := s.settleEarly(ctx, cp, eventID, outcome, take)
	if used(outcome) {
		return g, repl // a failed settle is re-driven; the flow has the event
	}
	if err = keepNotReplicated(&repl, err); err != nil {
		return nil, err
	}
	// The flow left its wait meanwhile; the event went back: another
	// waiter may have looked while it was claimed.
	if back {
		if _, _, err := s.placeEarly(ctx, cp, eventID); keepNotReplicated(&repl, err) != nil {
			return nil, err
		}
	}
	g, err = s.get(ctx, f.ID)
	if err != nil {
		return nil, err
	}
	return g, repl
}

// redriveClaims delivers each claim past due at nowMs to its flow again
// and settles it, at most batch per shard, offering a refused event to
// another waiter, and returns how many it settled.
func (s *RedisStore) redriveClaims(ctx context.Context, nowMs string, batch int) (int, error) {
	pipe := s.client.Pipeline()
	cmds := make([]*redis.StringSliceCmd, s.keys.shards)
	for i := range cmds {
		cmds[i] = pipe.ZRangeByScore(ctx, s.keys.claimDue(i), &redis.ZRangeBy{Min: "-inf", Max: nowMs, Count: int64(batch)})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("taskflow: early event claims: %w", err)
	}
	n := 0
	for shard, c := range cmds {
		for _, eventID := range c.Val() {
			raw, err := s.client.HGet(ctx, s.keys.claims(shard), eventID).Result()
			if errors.Is(err, redis.Nil) {
				raw = ""
			} else if err != nil {
				return n, fmt.Errorf("taskflow: early event claims: %w", err)
			}
			_, cp, outcome, back, err := s.finishClaim(ctx, shard, eventID, raw, true)
			if err != nil {
				return n, err
			}
			if outcome == "" {
				continue
			}
			n++
			if back {
				if _, _, err := s.placeEarly(ctx, cp, eventID); err != nil {
					return n, err
				}
			}
		}
	}
	return n, nil
}

// finishClaim delivers a claimed event (raw: its claim, read from the
// shard's claims hash; "" when it was settled meanwhile) to its flow and
// settles the claim: it returns the flow (lean: as deliver reads it),
// the event's pair, the delivery's outcome ("" when there was no claim to
// finish) and whether the event went back to its list (refused). A
// claim that is unreadable, or on the wrong shard, is dropped, or it
// would be met again on every tick.
func (s *RedisStore) finishClaim(ctx context.Context, shard int, eventID, raw string, lean bool) (*Flow, string, string, bool, error) {
	id, cp, payload, ok := parseClaim(raw)
	if !ok || s.keys.rendezvous(cp) != shard {
		_, _ = s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.ZRem(ctx, s.keys.claimDue(shard), eventID)
			if raw != "" {
				p.HDel(ctx, s.keys.claims(shard), eventID)
			}
			return nil
		})
		return nil, "", "", false, nil
	}
	f, outcome, err := s.deliver(ctx, id, cp, eventID, payload, "resume", lean)
	if err != nil && !errors.Is(err, ErrNotReplicated) {
		return nil, cp, "", false, err
	}
	back, serr := s.settleEarly(ctx, cp, eventID, outcome, "")
	if serr != nil && !errors.Is(serr, ErrNotReplicated) {
		return f, cp, outcome, false, serr
	}
	return f, cp, outcome, back, errors.Join(err, serr)
}

// parseClaim splits a claim: '<flow id> <n> <corr prefix, n bytes><entry>'.
func parseClaim(c string) (uuid.UUID, string, json.RawMessage, bool) {
	idStr, rest, ok := strings.Cut(c, " ")
	if !ok {
		return uuid.Nil, "", nil, false
	}
	id, err := uuid.Parse(idStr)
	if err != nil {
		return uuid.Nil, "", nil, false
	}
	nStr, rest, ok := strings.Cut(rest, " ")
	n, err := strconv.Atoi(nStr)
	if !ok || err != nil || n < 0 || n > len(rest) {
		return uuid.Nil, "", nil, false
	}
	_, payload, ok := parseEarlyEntry(rest[n:])
	if !ok {
		return uuid.Nil, "", nil, false
	}
	return id, rest[:n], payload, true
}

// deliver runs deliver_event.lua: the flow, when the event resumed it (now
// or before), and the outcome.
func (s *RedisStore) deliver(ctx context.Context, id uuid.UUID, cp, eventID string, payload json.RawMessage, mode string, lean bool) (f *Flow, outcome string, err error) {
	if err := s.ensureLoaded(ctx); err != nil {
		return nil, "", err
	}
	var raw error
	if s.observing() {
		// A delivery that resumes the flow is a resume by external event
		// for the observer, wherever it came from.
		start := time.Now()
		defer func() {
			m := opMeta{waitKind: string(WaitKindExternalEvent)}
			if outcome == earlyUsed {
				m.event = EventResumed
			}
			s.observeOp(ctx, s.scripts.deliverEvent, m, id, start, f, raw, err)
		}()
	}
	_, nowMs := s.clock()
	args := append(s.head(id, nowMs, mutation{lean: lean}),
		cp, eventID, string(payload), mode, s.early.retention.Milliseconds(), s.early.cap)
	args = append(args, s.early.memoryArgs()...)
	v, raw := s.eval(ctx, s.scripts.deliverEvent, s.keys.withEarly(s.keys.flowKeys(id, ""), id), args)
	if raw != nil {
		err = callError(raw, id)
		var te *TransitionError
		if errors.As(err, &te) {
			te.To = StatusRunning
		}
		if !errors.Is(err, ErrNotReplicated) {
			return nil, "", err
		}
		// Applied, not confirmed by replicas: the outcome, and the error.
	}
	arr, ok := v.([]any)
	if !ok || len(arr) < 2 {
		return nil, "", fmt.Errorf("taskflow: unexpected script reply %T", v)
	}
	outcome, _ = arr[1].(string)
	if !used(outcome) {
		return nil, outcome, err
	}
	f, derr := decodeFlowReply(id, arr, !lean)
	if derr != nil {
		return nil, "", derr
	}
	if outcome == earlyUsed {
		s.gateQueue(ctx, f, false) // resumed: on its lane, if it has keys
	}
	return f, outcome, err
}

// keepEarly runs early_keep.lua; claimed tells that the event sits in a
// claim (taken, not settled).
func (s *RedisStore) keepEarly(ctx context.Context, cp, eventID string, payload json.RawMessage) (claimed bool, err error) {
	r := s.keys.rendezvous(cp)
	_, nowMs := s.clock()
	res, err := s.run(ctx, s.scripts.earlyKeep, uuid.Nil, []string{s.keys.earlyPair(cp), s.keys.earlyIndex(r), s.keys.claims(r), s.keys.used(r)},
		eventID, nowMs, s.early.retention.Milliseconds(), string(payload), s.early.cap)
	if err != nil {
		err = fmt.Errorf("taskflow: keeping an early event: %w", err)
		if !errors.Is(err, ErrNotReplicated) {
			return false, err
		}
	}
	n, _ := res.(int64)
	return n == 2, err
}

// takeEarly runs early_take.lua: it claims for flow id the oldest kept
// event of the pair (eventID "") or the given one, and returns its id and
// payload; ok is false when there was none. name (newEventID, once per
// call) names the take, so go-redis re-sending it after a lost reply
// gets the event the first run claimed; settleEarly forgets it. A take
// that applied but was not confirmed by replicas (WithReplicaAcks)
// returns the event and a *NotReplicatedError.
func (s *RedisStore) takeEarly(ctx context.Context, id uuid.UUID, cp, eventID, name string) (string, json.RawMessage, bool, error) {
	r := s.keys.rendezvous(cp)
	_, nowMs := s.clock()
	v, err := s.run(ctx, s.scripts.earlyTake, id,
		[]string{s.keys.earlyPair(cp), s.keys.earlyIndex(r), s.keys.claims(r), s.keys.claimDue(r), s.keys.take(r, name)},
		id.String(), nowMs, earlyClaimTimeout.Milliseconds(), cp, eventID, name)
	if errors.Is(err, redis.Nil) {
		return "", nil, false, nil
	}
	if err != nil && !errors.Is(err, ErrNotReplicated) {
		return "", nil, false, fmt.Errorf("taskflow: taking an early event: %w", err)
	}
	entry, ok := v.(string)
	if !ok && err != nil { // not replicated, and nothing taken
		return "", nil, false, nil
	}
	got, payload, ok := parseEarlyEntry(entry)
	if !ok {
		return "", nil, false, fmt.Errorf("%w: unreadable kept event %q", ErrInvalidData, entry)
	}
	return got, payload, true, err
}

// parseEarlyEntry splits '<event id> <deadline ms> <payload>'.
func parseEarlyEntry(entry string) (string, json.RawMessage, bool) {
	id, rest, ok := strings.Cut(entry, " ")
	if !ok {
		return "", nil, false
	}
	dl, payload, ok := strings.Cut(rest, " ")
	if _, err := strconv.ParseInt(dl, 10, 64); !ok || err != nil || id == "" {
		return "", nil, false
	}
	if payload == "" {
		return id, nil, true
	}
	return id, json.RawMessage(payload), true
}

// settleEarly runs early_settle.lua for the claim made by the take named
// take ("" when unknown: its name expires with the claim); back reports
// that a refused event went back to its list.
func (s *RedisStore) settleEarly(ctx context.Context, cp, eventID, outcome, take string) (bool, error) {
	r := s.keys.rendezvous(cp)
	_, nowMs := s.clock()
	if outcome == earlySeen {
		outcome = earlyUsed
	}
	v, err := s.run(ctx, s.scripts.earlySettle, uuid.Nil,
		[]string{s.keys.claims(r), s.keys.claimDue(r), s.keys.earlyPair(cp), s.keys.earlyIndex(r), s.keys.used(r), s.keys.take(r, take)},
		eventID, outcome, nowMs, s.early.cap, s.early.remember.Milliseconds(), s.early.rememberCap)
	n, _ := v.(int64)
	if err != nil {
		return n == 1, fmt.Errorf("taskflow: settling an early event: %w", err)
	}
	return n == 1, nil
}

// waitersOf returns the flows indexed as waiting for the pair, from every
// shard's correlation index in one pipeline.
func (s *RedisStore) waitersOf(ctx context.Context, cp string) ([]uuid.UUID, error) {
	pipe := s.client.Pipeline()
	cmds := make([]*redis.StringSliceCmd, s.keys.shards)
	for i := range cmds {
		cmds[i] = pipe.ZRangeByLex(ctx, s.keys.corr(i), &redis.ZRangeBy{
			Min: "[" + cp, Max: "(" + cp + "\xff",
		})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("taskflow: resume by correlation: %w", err)
	}
	var out []uuid.UUID
	for _, c := range cmds {
		for _, member := range c.Val() {
			if id, err := uuid.Parse(member[len(cp):]); err == nil {
				out = append(out, id)
			}
		}
	}
	return out, nil
}

// errEarlyBusy: waiters kept leaving while an event was offered to them.
var errEarlyBusy = errors.New("taskflow: the waiters of an early event kept leaving; the event stays kept")

// keepNotReplicated sets *first to err when err is a write that applied but
// was not confirmed by replicas (WithReplicaAcks) and *first is unset,
// and returns nil for it: the delivery goes on with what applied, and the
// caller gets the error with the outcome. Other errors are returned.
func keepNotReplicated(first *error, err error) error {
	if !errors.Is(err, ErrNotReplicated) {
		return err
	}
	if *first == nil {
		*first = err
	}
	return nil
}

// countEarlyEvents returns how many kept events (of both kinds) have not
// expired, from each shard's index of kept events: one ZCOUNT per shard,
// in one pipeline. Events being delivered (claimed) are not counted.
func (s *RedisStore) countEarlyEvents(ctx context.Context) (int, error) {
	_, nowMs := s.clock()
	pipe := s.client.Pipeline()
	cmds := make([]*redis.IntCmd, s.keys.shards)
	for i := range cmds {
		cmds[i] = s.earlyEventsCmd(ctx, pipe, i, nowMs)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("taskflow: counting early events: %w", err)
	}
	n := 0
	for _, c := range cmds {
		n += int(c.Val())
	}
	return n, nil
}

// earlyEventsCmd queues, on pipe, the command that counts the early
// events kept in shard and not yet expired (the shard's deadline index,
// as countEarlyEvents and Stats read it).
func (s *RedisStore) earlyEventsCmd(ctx context.Context, pipe redis.Pipeliner, shard int, nowMs string) *redis.IntCmd {
	return pipe.ZCount(ctx, s.keys.earlyIndex(shard), "("+nowMs, "+inf")
}

// externalEvent is one external event on its way to a flow: checked,
// named, and addressed to a flow id (byFlow) or to every flow waiting
// for its topic and correlation id.
type externalEvent struct {
	byFlow        bool
	flowID        uuid.UUID
	topic         string
	correlationID string
	// cp is corrPrefix(topic, correlationID).
	cp      string
	payload json.RawMessage
	// id names the event: the bridge names an event by its request, so
	// that a request handled again is recognised; other doors make one
	// per call (newEventID).
	id string
	// mut carries the bridge's call id for each request (see bridgeCall).
	mut mutation
}

// newEventID names an event that came without a name of its own.
func newEventID() string { return uuid.NewString() }
