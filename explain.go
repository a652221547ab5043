package taskflow

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Explanation says, for one flow, why it is where it is and what will
// move it (Manager.Explain): in plain words (Text, Moves) and as data
// (Code, Stuck, Facts) for programs and alerts.
type Explanation struct {
	FlowID uuid.UUID  `json:"flow_id"`
	Status FlowStatus `json:"status"`
	// Code names the situation; its values are stable:
	//
	//	created               made, never started
	//	ready                 running, on its controller's ready queue
	//	gated                 running, with concurrency keys or a priority:
	//	                      waiting in its controller's lane in the gate
	//	                      for its turn or for a key's limit (facts
	//	                      held_by, in_flight:<key>, ...)
	//	gate_pending          running, made ready, not yet on its lane: its
	//	                      relay entry 'g <id>' is pending (an engine's
	//	                      tick queues it)
	//	admitted              running, admitted by the gate (holding a slot
	//	                      of each of its keys) for a worker that is
	//	                      taking its lease
	//	leased                running, held by a worker's live lease
	//	lease_expired         running, its worker's lease ran out and no tick
	//	                      has put it back on its queue yet
	//	waiting_timer         waiting on a timer (due or not)
	//	waiting_event         waiting on an external event
	//	waiting_manual        waiting on an explicit Resume
	//	waiting_children      waiting on its children (a join)
	//	waiting               waiting on a kind of wait the engine does not know
	//	cancel_pending        a cancel was requested and is not applied yet
	//	ended                 finished, failed or cancelled
	Code string `json:"code"`
	// Stuck tells that nothing in place will move the flow: no engine
	// ticks (for a timer due, an expired lease, a cancel to apply), no worker
	// waits for its controller's flows while it has been ready for over a
	// minute, a created flow nobody started for over a minute, a wait the
	// engine cannot end. A healthy flow, an ended one, or one waiting for
	// a person (a manual wait) is not stuck.
	Stuck bool `json:"stuck"`
	// Text says where the flow is and why, Moves what will move it on.
	Text  string `json:"text"`
	Moves string `json:"moves"`
	// Facts are the figures the words come from: times in RFC 3339,
	// durations in seconds ("_s"), counts; which ones depends on Code.
	Facts map[string]any `json:"facts,omitempty"`
}

// Explain thresholds: a flow ready this long with no worker waiting for
// its controller, a created one this long, or engines silent this long,
// is reported stuck.
const (
	explainReadyStale = time.Minute
	explainTickStale  = time.Minute
)

// Explain reads one flow and what surrounds it (its lease, queue, timer,
// kept events, children, the engines' last tick, the workers waiting
// for its controller) in a few round trips, and says why it is where it
// is and what will move it. It changes nothing. A flow that does not
// exist is ErrNotFound.
func (m *Manager) Explain(ctx context.Context, id uuid.UUID) (*Explanation, error) {
	return m.store.explain(ctx, id)
}

// explainReads is what explain reads around a flow, in one pipeline.
type explainReads struct {
	lease, lastTick *redis.StringCmd
	ready, timer    *redis.FloatCmd
	inbox           *redis.StringSliceCmd
	outcomes        *redis.SliceCmd
}

// explain is Explain.
func (s *RedisStore) explain(ctx context.Context, id uuid.UUID) (*Explanation, error) {
	f, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	now, _ := s.clock()
	shard := s.keys.shardOf(id)
	pipe := s.client.Pipeline()
	r := explainReads{
		lease:    pipe.HGet(ctx, s.keys.leases(shard), id.String()),
		lastTick: pipe.Get(ctx, s.keys.lastTick()),
		ready:    pipe.ZScore(ctx, s.keys.ready(shard, f.ControllerID), id.String()),
		timer:    pipe.ZScore(ctx, s.keys.timers(shard), id.String()),
		inbox:    pipe.LRange(ctx, s.keys.earlyFlow(id), 0, 99),
		outcomes: pipe.HMGet(ctx, s.keys.kidResults(id), "#finished", "#failed", "#cancelled"),
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("taskflow: explain flow %s: %w", id, err)
	}
	e := &Explanation{FlowID: id, Status: f.Status, Facts: map[string]any{}}
	tickAge, ticked := time.Duration(0), false
	if ms, err := strconv.ParseInt(r.lastTick.Val(), 10, 64); err == nil {
		tickAge, ticked = now.Sub(time.UnixMilli(ms)), true
		e.Facts["last_tick"] = time.UnixMilli(ms).UTC().Format(time.RFC3339)
		e.Facts["last_tick_age_s"] = seconds(tickAge)
	}
	enginesAlive := ticked && tickAge <= explainTickStale
	engines := "an engine ticked " + ago(tickAge)
	if !ticked {
		engines = "no engine has ticked this flow space"
	} else if !enginesAlive {
		engines = "no engine has ticked for " + words(tickAge)
	}
	if f.ParentID != uuid.Nil {
		e.Facts["parent_id"] = f.ParentID.String()
	}
	switch {
	case f.Status.IsTerminal():
		e.Code = "ended"
		e.Text = fmt.Sprintf("The flow %s %s ago.", f.Status, words(now.Sub(f.UpdatedAt)))
		e.Moves = "Nothing: an ended flow never moves again."
	case f.CancelRequested:
		e.Code = "cancel_pending"
		e.Facts["status"] = string(f.Status)
		if f.Status == StatusWaiting {
			e.Text = "A cancel was requested while the flow waits; the engine's next tick cancels it (" + engines + ")."
			e.Moves = "An engine's tick."
			e.Stuck = !enginesAlive
		} else {
			e.Text = fmt.Sprintf("A cancel was requested while the flow is %s; every move but Cancel is refused with ErrCancelPending.", f.Status)
			e.Moves = "Its worker (or anyone) calling Cancel."
			e.Stuck = f.Status == StatusCreated
		}
	case f.Status == StatusCreated:
		e.Code = "created"
		age := now.Sub(f.CreatedAt)
		e.Facts["age_s"] = seconds(age)
		e.Text = fmt.Sprintf("The flow was created %s ago and never started: a created flow is on no ready queue.", words(age))
		e.Moves = "StartRunning (or a start through the agent tool)."
		e.Stuck = age > explainReadyStale
	case f.Status == StatusRunning:
		s.explainRunning(ctx, f, r, now, engines, enginesAlive, e)
	default:
		s.explainWaiting(f, r, now, engines, enginesAlive, e)
	}
	if len(e.Facts) == 0 {
		e.Facts = nil
	}
	return e, nil
}

// explainRunning explains a running flow: leased, its lease expired, or
// ready (and whether a worker waits for its controller's flows).
func (s *RedisStore) explainRunning(ctx context.Context, f *Flow, r explainReads, now time.Time, engines string, alive bool, e *Explanation) {
	e.Facts["controller_id"] = f.ControllerID
	if lease := r.lease.Val(); lease != "" {
		token, rest, _ := strings.Cut(lease, "|")
		exp, worker, _ := strings.Cut(rest, "|")
		ms, _ := strconv.ParseInt(exp, 10, 64)
		expiry := time.UnixMilli(ms)
		if w, err := strconv.Unquote(worker); err == nil {
			worker = w // stored as a JSON string
		}
		e.Facts["lease_token"] = token
		e.Facts["worker_id"] = worker
		e.Facts["lease_expires_at"] = expiry.UTC().Format(time.RFC3339)
		if expiry.After(now) {
			e.Code = "leased"
			e.Text = fmt.Sprintf("Worker %q holds the flow under a lease that expires in %s.", worker, words(expiry.Sub(now)))
			e.Moves = "Its worker: a transition, a state update, a release; if it dies, the lease expires and the flow goes back on its queue."
			return
		}
		e.Code = "lease_expired"
		e.Facts["lease_expired_s"] = seconds(now.Sub(expiry))
		e.Text = fmt.Sprintf("Worker %q held the flow under a lease that expired %s ago; an engine's tick puts it back on its queue (%s).", worker, words(now.Sub(expiry)), engines)
		e.Moves = "An engine's tick, then a worker's Claim."
		e.Stuck = !alive
		return
	}
	if gateOf(f) != "" {
		s.explainGated(ctx, f, now, engines, alive, e)
		return
	}
	e.Code = "ready"
	since := now
	if r.ready.Err() == nil {
		since = time.UnixMilli(int64(r.ready.Val()))
	}
	age := now.Sub(since)
	e.Facts["ready_since"] = since.UTC().Format(time.RFC3339)
	e.Facts["ready_s"] = seconds(age)
	listening, err := s.listeners(ctx, s.keys.ready(s.keys.shardOf(f.ID), f.ControllerID))
	if err == nil {
		e.Facts["waiting_workers"] = listening
	}
	e.Text = fmt.Sprintf("The flow has been ready for %s, on controller %q's queue, for a worker to claim.", words(age), f.ControllerID)
	e.Moves = "A worker's Claim for controller " + strconv.Quote(f.ControllerID) + "."
	if err == nil && listening == 0 {
		e.Text += " No worker waits for that controller's flows."
		e.Stuck = age > explainReadyStale
	}
}

// listeners counts the subscribers of ch, a ready channel (a shard's, or
// a controller's lane in the gate): Managers with a Claim waiting for the
// controller's flows.
func (s *RedisStore) listeners(ctx context.Context, ch string) (int64, error) {
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		node, err := cc.MasterForKey(ctx, ch)
		if err != nil {
			return 0, err
		}
		n, err := node.PubSubShardNumSub(ctx, ch).Result()
		return n[ch], err
	}
	n, err := s.client.PubSubNumSub(ctx, ch).Result()
	return n[ch], err
}

// explainWaiting explains a waiting flow by its wait's kind.
func (s *RedisStore) explainWaiting(f *Flow, r explainReads, now time.Time, engines string, alive bool, e *Explanation) {
	w, err := parseStoredWait(f.Wait)
	if err != nil {
		e.Code = "waiting"
		e.Text = "The flow waits on a wait condition that does not parse: " + err.Error()
		e.Moves = "Only an explicit Resume (Verify reports the wait)."
		e.Stuck = true
		return
	}
	e.Facts["wait_kind"] = string(w.Kind)
	switch w.Kind {
	case WaitKindTimer:
		e.Code = "waiting_timer"
		e.Facts["due_at"] = w.At.UTC().Format(time.RFC3339)
		if w.At.After(now) {
			e.Facts["due_in_s"] = seconds(w.At.Sub(now))
			e.Text = fmt.Sprintf("The flow waits on a timer due in %s (%s).", words(w.At.Sub(now)), engines)
			e.Moves = "An engine's first tick at or after the timer."
		} else {
			e.Facts["overdue_s"] = seconds(now.Sub(w.At))
			e.Text = fmt.Sprintf("The flow waits on a timer that was due %s ago (%s).", words(now.Sub(w.At)), engines)
			e.Moves = "An engine's next tick."
			e.Stuck = !alive
		}
		if r.timer.Err() != nil {
			e.Text += " Its timer entry is missing: no tick will find it (Verify repairs it)."
			e.Stuck = true
		}
	case WaitKindExternalEvent:
		e.Code = "waiting_event"
		e.Facts["topic"], e.Facts["correlation_id"] = w.Topic, w.CorrelationID
		e.Text = fmt.Sprintf("The flow waits on an event of topic %q with correlation id %q.", w.Topic, w.CorrelationID)
		e.Moves = "ResumeByCorrelation, PublishResume or a bridge message with that topic and correlation id (or by flow id)."
		explainKept(r.inbox.Val(), w, now, s.early.retention, e)
	case WaitKindManual:
		e.Code = "waiting_manual"
		e.Text = "The flow waits for a person or a program to resume it."
		e.Moves = "An explicit Resume."
	case WaitKindChildren:
		e.Code = "waiting_children"
		v := r.outcomes.Val()
		counts := [3]int{}
		for i := range counts {
			if i < len(v) && v[i] != nil {
				counts[i], _ = strconv.Atoi(fmt.Sprint(v[i]))
			}
		}
		ended := counts[0] + counts[1] + counts[2]
		need := w.Need
		if need == 0 {
			need = f.Children
		}
		e.Facts["children"], e.Facts["need"] = f.Children, need
		e.Facts["finished"], e.Facts["failed"], e.Facts["cancelled"] = counts[0], counts[1], counts[2]
		e.Facts["pending"] = f.Children - ended
		e.Text = fmt.Sprintf("The flow waits on its children: %d of %d finished (%d needed), %d failed, %d cancelled, %d still open.",
			counts[0], f.Children, need, counts[1], counts[2], f.Children-ended)
		e.Moves = "Its children ending (ListChildren shows them)"
		if w.FailFast {
			e.Moves += "; any failure resumes it (fail-fast)"
		}
		if !w.At.IsZero() {
			e.Facts["deadline"] = w.At.UTC().Format(time.RFC3339)
			e.Moves += "; or its deadline, " + w.At.UTC().Format(time.RFC3339) + ", at an engine's tick"
		}
		e.Moves += "."
	default:
		e.Code = "waiting"
		e.Text = fmt.Sprintf("The flow waits on a wait of kind %q, which the engine does not know.", w.Kind)
		e.Moves = "Only an explicit Resume."
		e.Stuck = true
	}
}

// explainKept adds to e what the flow's kept early events (the first
// 100; kept for keep) say: events sent to it (by flow id) that its wait
// does not match, the oldest one's age, and a near miss (the same
// correlation id under another topic, or the reverse).
func explainKept(inbox []string, w WaitCondition, now time.Time, keep time.Duration, e *Explanation) {
	unmatched, oldest := 0, time.Duration(0)
	var near string
	for _, entry := range inbox {
		topic, corr, deadline, ok := parseKeptEntry(entry)
		if !ok || (topic == w.Topic && corr == w.CorrelationID) || !deadline.After(now) {
			continue
		}
		unmatched++
		if age := now.Sub(deadline.Add(-keep)); age > oldest {
			oldest = age
		}
		if near == "" && (corr == w.CorrelationID || topic == w.Topic) {
			near = fmt.Sprintf("topic %q, correlation id %q", topic, corr)
		}
	}
	if unmatched == 0 {
		return
	}
	e.Facts["kept_unmatched"] = unmatched
	e.Facts["kept_oldest_s"] = seconds(oldest)
	e.Text += fmt.Sprintf(" %d event(s) kept for it do not match its wait, the oldest %s old", unmatched, words(oldest))
	if near != "" {
		e.Facts["near_miss"] = near
		e.Text += "; a near miss: " + near
	}
	e.Text += "."
}

// parseKeptEntry reads an entry of a flow's kept events ('<event id>
// <deadline ms> <len> <topic+corr><payload>', lua/deliver_event.lua):
// the topic and correlation id it was sent with, and its deadline (the
// time it is kept until).
func parseKeptEntry(entry string) (topic, corr string, deadline time.Time, ok bool) {
	parts := strings.SplitN(entry, " ", 4)
	if len(parts) != 4 {
		return "", "", time.Time{}, false
	}
	ms, err1 := strconv.ParseInt(parts[1], 10, 64)
	n, err2 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil || n < 0 || n > len(parts[3]) {
		return "", "", time.Time{}, false
	}
	topic, corr, ok = splitCorrPrefix(parts[3][:n])
	return topic, corr, time.UnixMilli(ms), ok
}

// splitCorrPrefix reverses corrPrefix: '<len>:<topic><len>:<corr>:'.
func splitCorrPrefix(cp string) (topic, corr string, ok bool) {
	take := func(s string) (string, string, bool) {
		n, rest, found := strings.Cut(s, ":")
		l, err := strconv.Atoi(n)
		if !found || err != nil || l < 0 || l > len(rest) {
			return "", "", false
		}
		return rest[:l], rest[l:], true
	}
	topic, rest, ok := take(cp)
	if !ok {
		return "", "", false
	}
	corr, rest, ok = take(rest)
	return topic, corr, ok && rest == ":"
}

// seconds is d in whole seconds, for Facts.
func seconds(d time.Duration) int64 { return int64(d / time.Second) }

// words says a duration to a person: "40s", "5m", "2h10m", "3d".
func words(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if m == 0 {
			return strconv.Itoa(h) + "h"
		}
		return strconv.Itoa(h) + "h" + strconv.Itoa(m) + "m"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d"
}

// ago says how long ago, in words.
func ago(d time.Duration) string { return words(d) + " ago" }

// Stuck lists flows that nothing in place will move (Explanation.Stuck),
// with their explanations, at most limit (1 to 1000; 0 means 100). It
// looks where stuck flows are found, in one pipeline over the shards,
// not by visiting every flow: timers due, leases expired, cancel
// requests not applied, ready flows and created flows older than a
// minute (at most limit of each kind per shard, and of each of up to 256
// queues of the gate's lanes, gate.go); it then explains each.
// A flow that is late but whose engines and workers are running is not
// listed.
func (m *Manager) Stuck(ctx context.Context, limit int) ([]*Explanation, error) {
	return m.store.stuck(ctx, limit)
}

// stuckLanes is how many of the gate's lane queues Stuck looks at.
const stuckLanes = 256

// stuck is Stuck.
func (s *RedisStore) stuck(ctx context.Context, limit int) ([]*Explanation, error) {
	switch {
	case limit == 0:
		limit = defaultListLimit
	case limit < 0 || limit > maxListLimit:
		return nil, fmt.Errorf("%w: Stuck lists 1 to %d flows, not %d", ErrInvalidData, maxListLimit, limit)
	}
	if err := s.checkLayout(ctx); err != nil {
		return nil, err
	}
	now, nowMs := s.clock()
	old := strconv.FormatInt(now.Add(-explainReadyStale).UnixMilli(), 10)
	n := int64(limit)
	pipe := s.client.Pipeline()
	var cmds []*redis.StringSliceCmd
	var ctls []*redis.StringSliceCmd
	for sh := 0; sh < s.keys.shards; sh++ {
		cmds = append(cmds,
			pipe.ZRangeByScore(ctx, s.keys.timers(sh), &redis.ZRangeBy{Min: "-inf", Max: nowMs, Count: n}),
			pipe.ZRangeByScore(ctx, s.keys.leaseExp(sh), &redis.ZRangeBy{Min: "-inf", Max: nowMs, Count: n}),
			pipe.SRandMemberN(ctx, s.keys.cancelWait(sh), n),
			pipe.ZRangeByScore(ctx, s.keys.status(sh, StatusCreated), &redis.ZRangeBy{Min: "-inf", Max: old, Count: n}))
		ctls = append(ctls, pipe.SMembers(ctx, s.keys.controllers(sh)))
	}
	// The gate's lanes (flows with concurrency keys or a priority): a
	// sample of their queues.
	lanes := pipe.SRandMemberN(ctx, s.keys.gateQueues(), stuckLanes)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("taskflow: stuck: %w", err)
	}
	pipe = s.client.Pipeline()
	for sh, c := range ctls {
		for _, ctl := range c.Val() {
			cmds = append(cmds, pipe.ZRangeByScore(ctx, s.keys.ready(sh, ctl), &redis.ZRangeBy{Min: "-inf", Max: old, Count: n}))
		}
	}
	for _, q := range lanes.Val() {
		cmds = append(cmds, pipe.ZRangeByScore(ctx, q, &redis.ZRangeBy{Min: "-inf", Max: old, Count: n}))
	}
	if pipe.Len() > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("taskflow: stuck: %w", err)
		}
	}
	seen := map[uuid.UUID]bool{}
	var out []*Explanation
	for _, c := range cmds {
		for _, raw := range c.Val() {
			id, err := uuid.Parse(raw)
			if err != nil || seen[id] {
				continue
			}
			seen[id] = true
			x, err := s.explain(ctx, id)
			if errors.Is(err, ErrNotFound) {
				continue // gone meanwhile, or a stale entry (Verify)
			}
			if err != nil {
				return out, err
			}
			if x.Stuck {
				out = append(out, x)
				if len(out) == limit {
					return out, nil
				}
			}
		}
	}
	return out, nil
}

// explainGated explains a ready flow with concurrency keys or a priority
// (gate.go): it waits in its controller's lane in the gate, not on a
// shard's ready queue. It says where: on its lane (held by its turn, or
// by a key's limit: the first key whose concurrency is full or whose
// rate bucket is empty, as gate_admit.lua would refuse it), not yet
// queued there (its relay entry 'g <id>' is pending), admitted for a
// worker that is taking its lease, or lost (Verify's gate_unqueued).
// Reads only.
func (s *RedisStore) explainGated(ctx context.Context, f *Flow, now time.Time, engines string, alive bool, e *Explanation) {
	id := f.ID.String()
	keys, prio := f.Concurrency, f.Priority
	group := ""
	if len(keys) > 0 {
		group = keys[0]
	}
	k := s.keys
	q := k.gateQueue(prio, group, f.ControllerID)
	nowMs := now.UnixMilli()
	e.Facts["priority"] = prio
	e.Facts["fair_group"] = group
	e.Facts["concurrency_keys"] = strings.Join(keys, " ")
	e.Facts["lane"] = q

	pipe := s.client.Pipeline()
	relay := pipe.ZScore(ctx, k.relay(k.shardOf(f.ID)), "g "+id)
	queued := pipe.ZScore(ctx, q, id)
	rank := pipe.ZRank(ctx, q, id)
	meta := pipe.HGet(ctx, k.gateQueued(), id)
	limits := make([]*redis.StringCmd, len(keys))
	held := make([]*redis.IntCmd, len(keys))
	buckets := make([]*redis.SliceCmd, len(keys))
	for i, key := range keys {
		limits[i] = pipe.HGet(ctx, k.gateLimits(), key)
		held[i] = pipe.ZCount(ctx, k.gateHeld(key), "("+strconv.FormatInt(nowMs, 10), "+inf")
		buckets[i] = pipe.HMGet(ctx, k.gateBucket(key), "t", "at")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		e.Code = "gated"
		e.Text = "The flow is ready and waits in the gate; reading the gate failed: " + err.Error()
		e.Moves = "A worker's Claim for controller " + strconv.Quote(f.ControllerID) + "."
		return
	}
	onLane := queued.Err() == nil && meta.Val() == gateRecord(f.ControllerID, gateOf(f))

	// What holds it: the first key gate_admit.lua would refuse it for.
	heldBy, heldText, moves := "", "", ""
	for i, key := range keys {
		raw := limits[i].Val()
		if raw == "" {
			continue
		}
		l, err := decodeLimit(key, raw)
		if err != nil {
			continue
		}
		n := int(held[i].Val())
		e.Facts["in_flight:"+key] = n
		if l.Concurrency > 0 {
			e.Facts["concurrency:"+key] = l.Concurrency
			if heldBy == "" && n >= l.Concurrency {
				heldBy = key + " concurrency"
				heldText = fmt.Sprintf(" Key %q holds it: %d of %d flows in flight, its concurrency limit.", key, n, l.Concurrency)
				moves = fmt.Sprintf("A lease of key %q ending (a transition, a release, or its expiry), then a worker's Claim for controller %q.", key, f.ControllerID)
			}
		}
		if l.Rate > 0 {
			e.Facts["rate:"+key] = fmt.Sprintf("%d per %s", l.Rate, l.Per)
			v := buckets[i].Val()
			tokens, refill := bucketTokens(v, nowMs, l)
			e.Facts["rate_tokens:"+key] = math.Floor(tokens*100) / 100
			if !refill.IsZero() {
				e.Facts["rate_refill_at:"+key] = refill.UTC().Format(time.RFC3339Nano)
				if heldBy == "" {
					heldBy = key + " rate"
					heldText = fmt.Sprintf(" Key %q holds it: its rate bucket (%d per %s, burst %d) is empty and holds a claim again in %s.",
						key, l.Rate, l.Per, l.Burst, refillWords(refill.Sub(now)))
					moves = fmt.Sprintf("Key %q's rate bucket refilling (at %s), then a worker's Claim for controller %q.",
						key, refill.UTC().Format(time.RFC3339Nano), f.ControllerID)
				}
			}
		}
	}
	where := fmt.Sprintf("controller %q's lane in the gate (priority %d, fair group %q)", f.ControllerID, prio, group)

	switch {
	case onLane:
		e.Code = "gated"
		since := time.UnixMilli(int64(queued.Val()))
		age := now.Sub(since)
		e.Facts["ready_since"] = since.UTC().Format(time.RFC3339)
		e.Facts["ready_s"] = seconds(age)
		ahead := rank.Val()
		e.Facts["ahead_in_group"] = ahead
		e.Text = fmt.Sprintf("The flow has been ready for %s, waiting in %s", words(age), where)
		if ahead > 0 {
			e.Text += fmt.Sprintf(", behind %d flow(s) of its group", ahead)
		}
		e.Text += "."
		if heldBy != "" {
			e.Facts["held_by"] = heldBy
			e.Text += heldText
			e.Moves = moves
		} else {
			e.Text += " No limit of its keys holds it now: it is claimed in its turn (the highest priority first, then the fair groups by weight, then the oldest)."
			e.Moves = "A worker's Claim for controller " + strconv.Quote(f.ControllerID) + "."
		}
		listening, err := s.listeners(ctx, k.gateReady(f.ControllerID))
		if err == nil {
			e.Facts["waiting_workers"] = listening
			if listening == 0 {
				e.Text += " No worker waits for that controller's flows."
				e.Stuck = age > explainReadyStale
			}
		}
	case relay.Err() == nil:
		e.Code = "gate_pending"
		due := time.UnixMilli(int64(relay.Val()))
		e.Facts["relay_due_at"] = due.UTC().Format(time.RFC3339)
		e.Text = fmt.Sprintf("The flow is ready and not yet queued on %s: its relay entry is pending (the call that made it ready died before queueing it, or is queueing it now); an engine's tick queues it (%s).", where, engines)
		e.Moves = "An engine's tick (it drives the relay entry), then a worker's Claim for controller " + strconv.Quote(f.ControllerID) + "."
		e.Stuck = !alive && now.Sub(due) > explainReadyStale
	default:
		at, ok, err := s.admittedAt(ctx, f.ID)
		switch {
		case err == nil && ok:
			e.Code = "admitted"
			e.Facts["admission_expires_at"] = at.UTC().Format(time.RFC3339)
			e.Text = fmt.Sprintf("The gate admitted the flow (a slot of each of its keys is held for it) for a worker that is taking its lease; if that worker died, an engine's tick puts it back on %s once the admission expires", where)
			if at.After(now) {
				e.Text += " in " + words(at.Sub(now)) + "."
			} else {
				e.Text += fmt.Sprintf(", %s ago (%s).", words(now.Sub(at)), engines)
				e.Stuck = !alive
			}
			e.Moves = "The worker's Claim completing; else an engine's tick when the admission expires."
		default:
			e.Code = "gated"
			e.Text = fmt.Sprintf("The flow is ready but neither on %s nor left a relay entry to queue it there: no Claim will find it (Verify reports it as gate_unqueued and repairs it).", where)
			e.Moves = "Verify with repair (taskflow fsck --repair), which queues it on its lane; then a worker's Claim."
			e.Stuck = true
		}
	}
}

// admittedAt looks for a live admission of flow id in the gate's
// admissions ('<id>|<token>' by expiry), a bounded scan: its expiry, and
// whether one was found.
func (s *RedisStore) admittedAt(ctx context.Context, id uuid.UUID) (time.Time, bool, error) {
	match := escapeGlob(id.String()+"|") + "*"
	var cursor uint64
	for range 16 {
		vals, next, err := s.client.ZScan(ctx, s.keys.gateAdmissions(), cursor, match, 1000).Result()
		if err != nil {
			return time.Time{}, false, err
		}
		for i := 0; i+1 < len(vals); i += 2 {
			ms, err := strconv.ParseFloat(vals[i+1], 64)
			if err == nil {
				return time.UnixMilli(int64(ms)), true, nil
			}
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	return time.Time{}, false, nil
}

// bucketTokens reads a key's rate bucket (its fields t and at, as
// gate.lua's gate.tokens keeps them) at nowMs under limit l: the tokens
// it holds and, when under one, when it holds one again (zero: now).
func bucketTokens(v []any, nowMs int64, l KeyLimit) (float64, time.Time) {
	per := float64(l.Per.Milliseconds())
	rate, burst := float64(l.Rate), float64(l.Burst)
	t, at := burst, float64(nowMs)
	if len(v) == 2 {
		ts, _ := v[0].(string)
		as, _ := v[1].(string)
		t1, err1 := strconv.ParseFloat(ts, 64)
		a1, err2 := strconv.ParseFloat(as, 64)
		if err1 == nil && err2 == nil {
			t, at = t1, a1
		}
	}
	t = math.Min(burst, t+(float64(nowMs)-at)*rate/per)
	if t >= 1 || rate <= 0 {
		return t, time.Time{}
	}
	return t, time.UnixMilli(nowMs + int64(math.Ceil((1-t)*per/rate)))
}

// refillWords says a short wait: milliseconds under a second, else words.
func refillWords(d time.Duration) string {
	if d < time.Second {
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	}
	return words(d)
}
