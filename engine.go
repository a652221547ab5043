package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Defaults and limits of a WaitEngine.
const (
	DefaultTickInterval  = 5 * time.Second
	DefaultTickBatch     = 100
	MaxTickBatch         = 1000
	DefaultClaimAfter    = 30 * time.Second
	DefaultBridgeBlock   = time.Second
	DefaultBridgeGroup   = "taskflow-bridge"
	defaultBridgeBatch   = 50
	bridgeTransientPause = 200 * time.Millisecond
)

// MaxTickRounds bounds one tick: at most this many rounds, each taking
// at most one batch of each index from every shard.
const MaxTickRounds = 1000

// WaitEngine resumes waiting flows: due timers on each tick, cancel
// requests of waiting flows on each tick, and external events through
// TryResumeExternal, ResumeByCorrelation and the resume bridge.
//
// Any number of engines in any number of processes may run on one flow
// space at once: every resume is one script that re-checks the flow, so
// each due flow is resumed exactly once. A tick costs O(shards + due),
// not O(waiting): timers sit in per-shard sorted sets by deadline, and
// cancel-requested waiting flows in per-shard sets.
type WaitEngine struct {
	m       *Manager
	s       *RedisStore
	batch   int
	log     *slog.Logger
	group   string
	name    string
	claim   time.Duration
	block   time.Duration
	bridgeN atomic.Int64 // messages handled (any outcome)
	bridgeR atomic.Int64 // flows resumed through the bridge
	bridgeB atomic.Int64 // malformed messages
	bridgeE atomic.Int64 // messages whose handling failed for good
	bridgeC atomic.Int64 // messages claimed from other consumers
	earlyAt atomic.Int64 // when the tick last re-drove early-event claims (unix ms)
}

// EngineOption configures a WaitEngine.
type EngineOption func(*WaitEngine)

// WithTickBatch sets how many due entries a tick takes from one shard per
// round trip (default 100, at most 1000). A tick keeps taking batches
// until nothing is due or MaxTickRounds rounds were taken, so the batch
// bounds each round, and batch × MaxTickRounds the tick.
func WithTickBatch(n int) EngineOption {
	return func(e *WaitEngine) {
		if n >= 1 && n <= MaxTickBatch {
			e.batch = n
		}
	}
}

// WithLogger sets where the engine logs (default slog.Default()).
func WithLogger(l *slog.Logger) EngineOption {
	return func(e *WaitEngine) {
		if l != nil {
			e.log = l
		}
	}
}

// WithConsumerName names this engine in the bridge's consumer group
// (default: a random name per engine). Names must differ between live
// engines; a restarted process may reuse its old name to take its pending
// messages back at once.
func WithConsumerName(name string) EngineOption {
	return func(e *WaitEngine) {
		if name != "" {
			e.name = name
		}
	}
}

// WithClaimAfter sets how long a bridge message may stay unacknowledged
// by another consumer before this engine claims it (default 30 s, at
// least 100 ms). It should exceed the longest time a handler can take.
func WithClaimAfter(d time.Duration) EngineOption {
	return func(e *WaitEngine) {
		if d >= 100*time.Millisecond {
			e.claim = d
		}
	}
}

// WithBridgeBlock sets how long one bridge read blocks waiting for
// messages (default 1 s, from 10 ms to 10 s). RunResumeBridge notices the
// end of its context within about this long.
func WithBridgeBlock(d time.Duration) EngineOption {
	return func(e *WaitEngine) {
		if d >= 10*time.Millisecond && d <= 10*time.Second {
			e.block = d
		}
	}
}

// NewWaitEngine returns an engine over m's flow space.
func NewWaitEngine(m *Manager, opts ...EngineOption) *WaitEngine {
	e := &WaitEngine{
		m:     m,
		s:     m.store,
		batch: DefaultTickBatch,
		log:   slog.Default(),
		group: DefaultBridgeGroup,
		name:  "engine-" + uuid.NewString()[:8],
		claim: DefaultClaimAfter,
		block: DefaultBridgeBlock,
	}
	for _, o := range opts {
		if o != nil {
			o(e)
		}
	}
	return e
}

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
	// Truncated is true when the tick stopped after MaxTickRounds rounds
	// with entries still due; the next tick takes them.
	Truncated bool `json:"truncated,omitempty"`
	// EarlyRedriven counts kept events whose delivery to a waiting flow
	// was claimed but not finished in time (the claimer died or stalled)
	// and that this tick finished. Not part of Scanned.
	EarlyRedriven int `json:"early_redriven"`
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
	now, _, _ := e.s.clock()
	return e.TickAt(ctx, now)
}

// TickAt runs one tick as if the time were now: waiting flows with a
// cancel request are cancelled, then timers due at now resume (a
// cancel-requested one is cancelled instead), and expired leases end.
// External-event and manual waits are left alone. Index entries the tick
// cannot act on are removed (TickReport.Dropped), so a tick always ends,
// after at most MaxTickRounds rounds.
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
	nowStr := now.Format(time.RFC3339Nano)
	// Visit shards from a random start so engines ticking at once
	// mostly work on different shards.
	shards := make([]int, e.s.keys.shards)
	start := rand.IntN(len(shards))
	for i := range shards {
		shards[i] = (start + i) % len(shards)
	}
	active := shards
	for round := 0; len(active) > 0 && ctx.Err() == nil; round++ {
		if round == MaxTickRounds {
			rep.Truncated = true
			break
		}
		active = e.tickRound(ctx, active, nowMs, nowStr, &rep)
	}
	if rep.Dropped > 0 {
		e.log.Warn("taskflow: tick dropped index entries it could not act on", "dropped", rep.Dropped, "first_err", rep.Err)
	}
	if err := ctx.Err(); err != nil && rep.Err == nil {
		rep.fail(err)
	}
	waiting, err := e.s.countIndex(ctx, func(shard int) string { return e.s.keys.status(shard, StatusWaiting) })
	if err != nil {
		rep.fail(err)
	}
	rep.StillWaiting = waiting
	if n, err := e.redriveEarly(ctx, nowMs); err != nil {
		rep.fail(err)
	} else {
		rep.EarlyRedriven = n
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
func (e *WaitEngine) tickRound(ctx context.Context, shards []int, nowMs, nowStr string, rep *TickReport) []int {
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
				return scriptCall{e.s.scripts.expireLease, e.s.keys.flowKeys(id, ""), e.s.head(id, nowMs, nowStr, mutation{lean: true})}
			}},
			{entryCancel, cancels[i].Val(), func(id uuid.UUID) scriptCall { return e.cancelCall(id, nowMs, nowStr) }},
			{entryTimer, timers[i].Val(), func(id uuid.UUID) scriptCall { return e.timerCall(id, nowMs, nowStr) }},
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
	vals, errs := e.s.runPipelined(ctx, calls, e.s.tickMetas(kinds)...)
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

// entryKind says which index a tick entry came from.
type entryKind int

const (
	entryCancel entryKind = iota
	entryTimer
	entryLease
)

func (e *WaitEngine) timerCall(id uuid.UUID, nowMs, nowStr string) scriptCall {
	r := transitionReq{
		id: id, from: StatusWaiting, to: StatusRunning, kind: EventResumed,
		payload: json.RawMessage(`{"state_patch":null}`), guard: "timer",
	}
	r.mut.lean = true // the tick reads the status only
	return scriptCall{e.s.scripts.transition, e.s.keys.flowKeys(id, ""), e.s.transitionArgs(r, nowMs, nowStr)}
}

func (e *WaitEngine) cancelCall(id uuid.UUID, nowMs, nowStr string) scriptCall {
	return scriptCall{e.s.scripts.tickCancel, e.s.keys.flowKeys(id, ""), e.s.head(id, nowMs, nowStr, mutation{lean: true})}
}

func decodeReply(id uuid.UUID, v any) (*Flow, error) {
	arr, ok := v.([]any)
	if !ok || len(arr) < 2 {
		return nil, fmt.Errorf("taskflow: unexpected script reply %T", v)
	}
	return decodeFlow(id, replyFields(arr), false)
}

// countIndex sums the sizes of one index over the shards, in one pipeline.
func (s *RedisStore) countIndex(ctx context.Context, keyOf func(int) string) (int, error) {
	pipe := s.client.Pipeline()
	cmds := make([]*redis.IntCmd, s.keys.shards)
	for i := range cmds {
		cmds[i] = pipe.ZCard(ctx, keyOf(i))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("taskflow: count: %w", err)
	}
	n := 0
	for _, c := range cmds {
		n += int(c.Val())
	}
	return n, nil
}

// Run ticks every interval (DefaultTickInterval when interval <= 0) until
// ctx ends, then returns ctx's error. A tick that overruns delays the
// next one; missed ticks are dropped, never burst. When Redis is away the
// loop keeps going: it logs once when ticks start failing and once when
// they recover.
func (e *WaitEngine) Run(ctx context.Context, interval time.Duration) error {
	return e.RunWithReports(ctx, interval, nil)
}

// RunWithReports is Run that also hands every tick's report to report
// (when not nil), for progress displays and metrics.
func (e *WaitEngine) RunWithReports(ctx context.Context, interval time.Duration, report func(TickReport)) error {
	if interval <= 0 {
		interval = DefaultTickInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		rep := e.Tick(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch {
		case rep.Err != nil && rep.Resumed+rep.Cancelled == 0 && !failing:
			failing = true
			e.log.Error("taskflow: engine tick failing; will keep trying", "err", rep.Err)
		case rep.Err == nil && failing:
			failing = false
			e.log.Info("taskflow: engine tick recovered")
		}
		if report != nil {
			report(rep)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// TryResumeExternal resumes flowID if it is waiting for an external event
// with exactly topic and correlationID, merging {"resume_event": payload}
// into its state when payload is not nil (nor JSON null). It returns
// (nil, nil) when the flow is unknown, not waiting, or waiting for
// something else; when the store keeps early events (WithEarlyEvents, the
// default) the event is then kept for the flow, unless it is unknown or
// terminal, and the flow's next SetWaiting on topic and correlationID
// takes it. A cancel-requested flow waiting for the event is refused with
// ErrCancelPending (the next tick cancels it).
func (e *WaitEngine) TryResumeExternal(ctx context.Context, flowID uuid.UUID, topic, correlationID string, payload any) (*Flow, error) {
	return e.m.TryResumeExternal(ctx, flowID, topic, correlationID, payload)
}

// ResumeByCorrelation resumes a flow waiting for topic and correlationID
// (with the mailbox off, every such flow), wherever it lives, for senders
// that do not know the flow id, or keeps the event; see
// Manager.ResumeByCorrelation.
func (e *WaitEngine) ResumeByCorrelation(ctx context.Context, topic, correlationID string, payload any) ([]*Flow, error) {
	return e.m.ResumeByCorrelation(ctx, topic, correlationID, payload)
}

// TryResumeExternal: see WaitEngine.TryResumeExternal.
func (m *Manager) TryResumeExternal(ctx context.Context, flowID uuid.UUID, topic, correlationID string, payload any) (*Flow, error) {
	return m.tryResumeExternal(ctx, flowID, topic, correlationID, payload, newEventID(), mutation{})
}

// tryResumeExternal is TryResumeExternal with the event's id (the bridge
// names an event by its message, so a re-sent message is recognised) and
// mutation options (the bridge names each message's calls; see
// bridgeCallID).
func (m *Manager) tryResumeExternal(ctx context.Context, flowID uuid.UUID, topic, correlationID string, payload any, eventID string, mut mutation) (*Flow, error) {
	if topic == "" || correlationID == "" {
		return nil, fmt.Errorf("%w: topic and correlation_id are required", ErrInvalidData)
	}
	if err := checkText("the topic", topic, "the correlation_id", correlationID); err != nil {
		return nil, err
	}
	p, err := eventPayload(payload)
	if err != nil {
		return nil, err
	}
	if m.store.early.on() {
		if len(p) > m.store.maxState {
			return nil, fmt.Errorf("%w: payload is %d bytes, over the limit of %d", ErrInvalidData, len(p), m.store.maxState)
		}
		if err := m.store.recordLayout(ctx); err != nil {
			return nil, err
		}
		f, _, err := m.store.deliver(ctx, flowID, corrPrefix(topic, correlationID), eventID, p, "keep", false)
		if errors.Is(err, ErrStateTooLarge) {
			// The event cannot be merged: fail the flow if it still waits
			// for it, rather than drop the event in silence.
			req, rerr := m.resumeReq(flowID, nil, "corr:"+corrMember(topic, correlationID, flowID))
			if rerr != nil {
				return nil, err
			}
			req.mut = mut
			return nil, m.failUnmergeable(ctx, req, topic, err)
		}
		return f, err
	}
	var patch any
	if p != nil {
		patch = json.RawMessage(`{"resume_event":` + string(p) + `}`)
	}
	req, err := m.resumeReq(flowID, patch, "corr:"+corrMember(topic, correlationID, flowID))
	if err != nil {
		return nil, err
	}
	req.mut = mut
	f, err := m.store.transition(ctx, req)
	if errors.Is(err, errNoMatch) {
		return nil, nil
	}
	if errors.Is(err, ErrStateTooLarge) {
		return nil, m.failUnmergeable(ctx, req, topic, err)
	}
	return f, err
}

// failUnmergeable fails a flow whose incoming event cannot be merged (the
// state would pass its cap), if it still waits for that event, so the
// event is never dropped silently: the flow's failure reason says so.
// It returns err, noting that the flow was failed.
func (m *Manager) failUnmergeable(ctx context.Context, req transitionReq, topic string, err error) error {
	reason := fmt.Sprintf("an event for topic %q could not be merged: %v", topic, err)
	if max := m.store.limits.TextBytes; len(reason) > max {
		reason = reason[:max]
	}
	now, _, _ := m.store.clock()
	failure, merr := json.Marshal(map[string]any{
		"failure": map[string]string{"reason": reason, "at": now.Format(time.RFC3339)},
	})
	if merr != nil {
		return err
	}
	state, serr := m.store.stateArgs("failure", failure, true)
	if serr != nil {
		return err
	}
	if _, ferr := m.store.transition(ctx, failReq(req.id, reason, failure, state, req.guard, req.mut)); ferr != nil {
		return err
	}
	return fmt.Errorf("%w (flow %s was failed with this reason)", err, req.id)
}

// ResumeByCorrelation resumes a flow waiting for an external event with
// topic and correlationID, merging {"resume_event": payload} when payload
// is not nil (nor JSON null), and returns the resumed flows (none is not
// an error). It looks the pair up in every shard's correlation index, in
// one pipeline.
//
// When the store keeps early events (WithEarlyEvents, the default), the
// event is consumed once: it resumes one waiting flow, or, when none
// waits, is kept until a flow's SetWaiting takes it; each event resumes
// at most one flow. With the mailbox off, every flow waiting for the pair
// is resumed and an event nobody waits for is dropped.
func (m *Manager) ResumeByCorrelation(ctx context.Context, topic, correlationID string, payload any) ([]*Flow, error) {
	return m.resumeByCorrelation(ctx, topic, correlationID, payload, newEventID(), mutation{})
}

func (m *Manager) resumeByCorrelation(ctx context.Context, topic, correlationID string, payload any, eventID string, mut mutation) ([]*Flow, error) {
	if topic == "" || correlationID == "" {
		return nil, fmt.Errorf("%w: topic and correlation_id are required", ErrInvalidData)
	}
	if err := checkText("the topic", topic, "the correlation_id", correlationID); err != nil {
		return nil, err
	}
	p, err := eventPayload(payload)
	if err != nil {
		return nil, err
	}
	if len(p) > m.store.maxState {
		return nil, fmt.Errorf("%w: payload is %d bytes, over the limit of %d", ErrInvalidData, len(p), m.store.maxState)
	}
	if err := m.store.ensureLoaded(ctx); err != nil {
		return nil, err
	}
	cp := corrPrefix(topic, correlationID)
	if m.store.early.on() {
		if err := m.store.recordLayout(ctx); err != nil {
			return nil, err
		}
		return m.publishEarly(ctx, cp, eventID, p)
	}
	ids, err := m.store.waitersOf(ctx, cp)
	if err != nil {
		return nil, err
	}
	var out []*Flow
	for _, id := range ids {
		f, err := m.tryResumeExternal(ctx, id, topic, correlationID, p, eventID, mut)
		if err != nil {
			return out, err
		}
		if f != nil {
			out = append(out, f)
		}
	}
	return out, nil
}
