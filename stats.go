package taskflow

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Stats is a snapshot of a flow space: what it holds and how far behind
// its engines and workers are. Manager.Stats computes
// it in two pipelined round trips whatever the number of flows: the
// figures come from the per-shard indexes (ZCARD, ZCOUNT and the head of
// sorted sets), never from visiting flows. Its cost grows with shards ×
// controllers. When keys have a limit (Manager.SetKeyLimit), Keys takes
// three to four more (Manager.KeyLimits), growing with the gate's lanes.
//
// The figures are read shard by shard without a transaction: under load
// they are each exact at the moment their shard was read, not one
// instant's cut of the whole space.
type Stats struct {
	// At is the store's clock when the snapshot was taken; ages and lags
	// are measured from it.
	At time.Time `json:"at"`
	// Shards is the flow space's shard count.
	Shards int `json:"shards"`
	// Flows counts flows by status; every status is present (0 when none).
	Flows map[FlowStatus]int64 `json:"flows"`
	// Total is the sum of Flows.
	Total int64 `json:"total"`
	// Ready lists each controller's ready queue (running flows no worker
	// holds, on the shards' queues and on its lane in the gate, gate.go,
	// of which at most 1,000 queues are read), sorted by controller id. A controller stays listed with
	// depth 0 after its queue empties.
	Ready []ReadyQueueStats `json:"ready"`
	// ReadyStale is the sum of the ready queues' Stale counts: flows
	// that have waited for a worker longer than StaleAfter.
	ReadyStale int64 `json:"ready_stale"`
	// StaleAfter is how long a flow waits on a ready queue before it
	// counts as stale (ReadyQueueStats.Stale): one minute, fixed. A
	// controller whose workers keep up claims a flow within seconds.
	StaleAfter time.Duration `json:"stale_after_ns"`
	// Timers is what the engines' ticks have to do for timers.
	Timers TimerStats `json:"timers"`
	// Leases counts the workers' leases.
	Leases LeaseStats `json:"leases"`
	// Bridge is the resume bridge's stream.
	Bridge BridgeQueueStats `json:"bridge"`
	// EarlyEvents counts early events: external events kept because they
	// matched no waiting flow yet, waiting to be taken by a SetWaiting or
	// to expire (WithEarlyEvents).
	EarlyEvents int64 `json:"early_events"`
	// Joining counts parents waiting on their children
	// (WaitKindChildren; they are also in Flows[StatusWaiting]).
	Joining int64 `json:"joining"`
	// Relay counts the cross-shard work flows that ended left and that
	// is not done yet: children's outcomes not yet with their parents,
	// parents' children not yet closed (Manager.StartChild).
	// RelayDue counts those past the grace in which the ending call does
	// them itself: a call died, and no engine's tick has done them yet.
	Relay    int64 `json:"relay"`
	RelayDue int64 `json:"relay_due"`
	// Schedules counts schedules (Manager.CreateSchedule), paused ones
	// included; SchedulesPaused the paused ones; SchedulesDue those past
	// their due time that no tick has fired yet.
	Schedules       int64 `json:"schedules"`
	SchedulesPaused int64 `json:"schedules_paused"`
	SchedulesDue    int64 `json:"schedules_due"`
	// ScheduleFires and ScheduleSkips total the fires that made a flow
	// and the fires skipped (overlap, catch-up), since the flow space
	// began.
	ScheduleFires int64 `json:"schedule_fires"`
	ScheduleSkips int64 `json:"schedule_skips"`
	// ScheduleLag is how late the most overdue schedule is (0 when none
	// is due): like Timers.Lag, it says whether the engines keep up.
	ScheduleLag time.Duration `json:"schedule_lag_ns"`
	// Keys lists the concurrency keys that have a limit, by key, with
	// their flows in flight and their backlog, as Manager.KeyLimits
	// returns them: at most 1,000 (the bound on configured keys); nil
	// when no key has a limit. Keys without a limit are not listed.
	Keys []KeyUsage `json:"keys,omitempty"`
}

// ReadyQueueStats is one controller's ready queue, summed over the shards.
type ReadyQueueStats struct {
	Controller string `json:"controller"`
	// Depth is how many flows wait for a worker.
	Depth int64 `json:"depth"`
	// OldestAge is how long the oldest of them has waited (0 when empty):
	// a growing age says the workers are not keeping up.
	OldestAge time.Duration `json:"oldest_age_ns"`
	// Stale counts the flows that have waited longer than
	// Stats.StaleAfter (one minute): stuck flows, which no worker of the
	// controller has claimed (none runs, or too few). A flow's wait
	// starts when it was last put on the queue: at its start, its
	// resume, or when its lease was released or collected.
	Stale int64 `json:"stale"`
}

// staleAfter is Stats.StaleAfter: how long a flow waits on its ready
// queue before Stats counts it as stale.
const staleAfter = time.Minute

// TimerStats describes the timers of waiting flows.
type TimerStats struct {
	// Pending counts waiting flows with a timer.
	Pending int64 `json:"pending"`
	// Due counts timers whose deadline has passed but whose flow no tick
	// has resumed yet.
	Due int64 `json:"due"`
	// Lag is how late the most overdue timer is (0 when none is due): the
	// tick lag, the figure that says the engines are not keeping up. With
	// engines ticking every interval it stays below about one interval.
	Lag time.Duration `json:"lag_ns"`
}

// LeaseStats counts leases.
type LeaseStats struct {
	// Held counts the leases held, expired ones included (each lease has
	// one entry in its shard's lease expiry set).
	Held int64 `json:"held"`
	// Expired counts leases whose expiry has passed but which no tick has
	// collected yet (their flows are not back on a ready queue).
	Expired int64 `json:"expired"`
	// ExpiredLag is how long ago the oldest uncollected lease expired
	// (0 when none).
	ExpiredLag time.Duration `json:"expired_lag_ns"`
}

// BridgeQueueStats describes the resume bridge's stream. Handled
// messages are deleted, so the stream holds only unhandled ones.
type BridgeQueueStats struct {
	// Length counts the messages in the stream: not yet handled.
	Length int64 `json:"length"`
	// Pending counts messages delivered to an engine but not yet
	// acknowledged (being handled, or held by an engine that died).
	Pending int64 `json:"pending"`
	// Backlog counts messages no engine has read yet (Length - Pending).
	Backlog int64 `json:"backlog"`
}

// stats returns a snapshot of the flow space; see Stats.
func (s *RedisStore) stats(ctx context.Context) (*Stats, error) {
	if err := s.checkLayout(ctx); err != nil {
		return nil, err
	}
	now, nowMs := s.clock()
	n := s.keys.shards
	type shardCmds struct {
		status      []*redis.IntCmd
		timerHead   *redis.ZSliceCmd
		timerCount  *redis.IntCmd
		timersDue   *redis.IntCmd
		leases      *redis.IntCmd
		leaseHead   *redis.ZSliceCmd
		leasesDue   *redis.IntCmd
		controllers *redis.StringSliceCmd
		early       *redis.IntCmd
		joins       *redis.IntCmd
		relay       *redis.IntCmd
		relayDue    *redis.IntCmd
	}
	cmds := make([]shardCmds, n)
	pipe := s.client.Pipeline()
	due := &redis.ZRangeBy{Min: "-inf", Max: nowMs}
	for sh := range cmds {
		c := &cmds[sh]
		for _, st := range allStatuses {
			c.status = append(c.status, pipe.ZCard(ctx, s.keys.status(sh, st)))
		}
		c.timerHead = pipe.ZRangeWithScores(ctx, s.keys.timers(sh), 0, 0)
		c.timerCount = pipe.ZCard(ctx, s.keys.timers(sh))
		c.timersDue = pipe.ZCount(ctx, s.keys.timers(sh), due.Min, due.Max)
		c.leases = pipe.ZCard(ctx, s.keys.leaseExp(sh))
		c.leaseHead = pipe.ZRangeWithScores(ctx, s.keys.leaseExp(sh), 0, 0)
		c.leasesDue = pipe.ZCount(ctx, s.keys.leaseExp(sh), due.Min, due.Max)
		c.controllers = pipe.SMembers(ctx, s.keys.controllers(sh))
		c.early = s.earlyEventsCmd(ctx, pipe, sh, nowMs)
		c.joins = pipe.ZCard(ctx, s.keys.joins(sh))
		c.relay = pipe.ZCard(ctx, s.keys.relay(sh))
		c.relayDue = pipe.ZCount(ctx, s.keys.relay(sh), due.Min, due.Max)
	}
	schedN := pipe.ZCard(ctx, s.keys.schedNames())
	schedDue := pipe.ZCount(ctx, s.keys.schedDue(), due.Min, due.Max)
	schedHead := pipe.ZRangeWithScores(ctx, s.keys.schedDue(), 0, 0)
	schedTotals := pipe.HMGet(ctx, s.keys.schedStats(), "fires", "skips", "paused")
	streamLen := pipe.XLen(ctx, s.keys.bridge())
	limits := pipe.HLen(ctx, s.keys.gateLimits())
	laneCount := pipe.SCard(ctx, s.keys.gateQueues())
	groups := pipe.XInfoGroups(ctx, s.keys.bridge())
	_, _ = pipe.Exec(ctx)

	st := &Stats{At: now, Shards: n, Flows: make(map[FlowStatus]int64, len(allStatuses))}
	for _, x := range allStatuses {
		st.Flows[x] = 0
	}
	ready := map[string][]int{} // controller -> shards that know it
	for sh := range cmds {
		c := &cmds[sh]
		for i, x := range allStatuses {
			if err := c.status[i].Err(); err != nil {
				return nil, statsErr(err)
			}
			st.Flows[x] += c.status[i].Val()
			st.Total += c.status[i].Val()
		}
		for _, cmd := range []redis.Cmder{c.timerHead, c.timerCount, c.timersDue, c.leases, c.leaseHead, c.leasesDue, c.controllers,
			c.joins, c.relay, c.relayDue} {
			if err := cmd.Err(); err != nil {
				return nil, statsErr(err)
			}
		}
		st.Timers.Pending += c.timerCount.Val()
		st.Timers.Due += c.timersDue.Val()
		st.Timers.Lag = max(st.Timers.Lag, lagOf(c.timerHead.Val(), now))
		st.Joining += c.joins.Val()
		st.Relay += c.relay.Val()
		st.RelayDue += c.relayDue.Val()
		st.Leases.Held += c.leases.Val()
		st.Leases.Expired += c.leasesDue.Val()
		st.Leases.ExpiredLag = max(st.Leases.ExpiredLag, lagOf(c.leaseHead.Val(), now))
		for _, ctl := range c.controllers.Val() {
			ready[ctl] = append(ready[ctl], sh)
		}
		if c.early != nil {
			if err := c.early.Err(); err != nil && !errors.Is(err, redis.Nil) {
				return nil, statsErr(err)
			}
			st.EarlyEvents += c.early.Val()
		}
	}
	for _, cmd := range []redis.Cmder{schedN, schedDue, schedHead, schedTotals, streamLen, limits} {
		if err := cmd.Err(); err != nil {
			return nil, statsErr(err)
		}
	}
	st.Schedules, st.SchedulesDue = schedN.Val(), schedDue.Val()
	st.ScheduleLag = lagOf(schedHead.Val(), now)
	for i, p := range []*int64{&st.ScheduleFires, &st.ScheduleSkips, &st.SchedulesPaused} {
		if v, ok := schedTotals.Val()[i].(string); ok {
			*p, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	st.Bridge.Length = streamLen.Val()
	if err := groups.Err(); err != nil && !isNoSuchKey(err) {
		return nil, statsErr(err)
	}
	for _, g := range groups.Val() {
		if g.Name == bridgeGroup {
			st.Bridge.Pending = g.Pending
		}
	}
	st.Bridge.Backlog = max(st.Bridge.Length-st.Bridge.Pending, 0)

	var lanes map[string][]string
	if laneCount.Val() > 0 {
		var err error
		if lanes, err = s.laneQueues(ctx); err != nil {
			return nil, err
		}
	}
	rq, err := s.readyStats(ctx, ready, lanes, now)
	if err != nil {
		return nil, err
	}
	st.Ready = rq
	st.StaleAfter = staleAfter
	for _, q := range rq {
		st.ReadyStale += q.Stale
	}
	if limits.Val() > 0 {
		keys, err := s.keyLimits(ctx)
		if err != nil {
			return nil, err
		}
		if len(keys) > 0 {
			st.Keys = keys
		}
	}
	return st, nil
}

// statsLaneQueues bounds the queues of the gate's lanes Stats reads.
const statsLaneQueues = 1000

// laneQueues returns the queues of the gate's lanes (gate.go: flows with
// concurrency keys or a priority wait there, not on a shard's ready
// queue) by controller, at most statsLaneQueues of them.
func (s *RedisStore) laneQueues(ctx context.Context) (map[string][]string, error) {
	out := map[string][]string{}
	prefix := s.keys.gateTag() + ":q:"
	var cursor uint64
	for n := 0; n < statsLaneQueues; {
		qs, next, err := s.client.SScan(ctx, s.keys.gateQueues(), cursor, "", 200).Result()
		if err != nil {
			return nil, statsErr(err)
		}
		for _, q := range qs {
			// '<prefix>:{gate}:q:<lvl>|<group>|<ctl>': a group holds no '|'.
			_, rest, _ := strings.Cut(strings.TrimPrefix(q, prefix), "|")
			_, ctl, ok := strings.Cut(rest, "|")
			if ok && n < statsLaneQueues {
				out[ctl] = append(out[ctl], q)
				n++
			}
		}
		cursor = next
		if cursor == 0 {
			break
		}
	}
	return out, nil
}

// readyStats reads the depth, head and stale count of every known ready
// queue, the shards' and the gate's lanes', in one pipeline.
func (s *RedisStore) readyStats(ctx context.Context, ready map[string][]int, lanes map[string][]string, now time.Time) ([]ReadyQueueStats, error) {
	names := make([]string, 0, len(ready)+len(lanes))
	for ctl := range ready {
		names = append(names, ctl)
	}
	for ctl := range lanes {
		if _, ok := ready[ctl]; !ok {
			names = append(names, ctl)
		}
	}
	sort.Strings(names)
	out := make([]ReadyQueueStats, len(names))
	if len(names) == 0 {
		return out, nil
	}
	type queueCmds struct {
		depth *redis.IntCmd
		head  *redis.ZSliceCmd
		stale *redis.IntCmd
	}
	// A flow is stale when it has waited longer than staleAfter: its
	// score (the time it was queued, unix ms) is below now - staleAfter.
	staleMax := "(" + strconv.FormatInt(now.Add(-staleAfter).UnixMilli(), 10)
	cmds := make([][]queueCmds, len(names))
	pipe := s.client.Pipeline()
	for i, ctl := range names {
		keys := lanes[ctl]
		for _, sh := range ready[ctl] {
			keys = append(keys, s.keys.ready(sh, ctl))
		}
		for _, key := range keys {
			cmds[i] = append(cmds[i], queueCmds{pipe.ZCard(ctx, key), pipe.ZRangeWithScores(ctx, key, 0, 0),
				pipe.ZCount(ctx, key, "-inf", staleMax)})
		}
	}
	_, _ = pipe.Exec(ctx)
	for i, ctl := range names {
		out[i].Controller = ctl
		for _, c := range cmds[i] {
			if err := c.depth.Err(); err != nil {
				return nil, statsErr(err)
			}
			if err := c.head.Err(); err != nil {
				return nil, statsErr(err)
			}
			if err := c.stale.Err(); err != nil {
				return nil, statsErr(err)
			}
			out[i].Depth += c.depth.Val()
			out[i].Stale += c.stale.Val()
			out[i].OldestAge = max(out[i].OldestAge, lagOf(c.head.Val(), now))
		}
	}
	return out, nil
}

// lagOf returns how far in the past the score (unix ms) of a sorted set's
// head is, or 0 when the set is empty or the head is in the future.
func lagOf(head []redis.Z, now time.Time) time.Duration {
	if len(head) == 0 {
		return 0
	}
	at := time.UnixMilli(int64(head[0].Score))
	if d := now.Sub(at); d > 0 {
		return d
	}
	return 0
}

func statsErr(err error) error { return fmt.Errorf("taskflow: stats: %w", err) }

// isNoSuchKey reports XINFO's reply for a stream that does not exist.
func isNoSuchKey(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "no such key")
}

// String renders the snapshot as the text `taskflow stats` prints.
func (st *Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "flows %d (", st.Total)
	for i, x := range allStatuses {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", x, st.Flows[x])
	}
	b.WriteString(")\n")
	fmt.Fprintf(&b, "timers %d pending, %d due, tick lag %s\n", st.Timers.Pending, st.Timers.Due, st.Timers.Lag)
	fmt.Fprintf(&b, "leases %d held, %d expired uncollected (oldest %s ago)\n", st.Leases.Held, st.Leases.Expired, st.Leases.ExpiredLag)
	fmt.Fprintf(&b, "bridge %d unhandled: %d backlog, %d pending\n", st.Bridge.Length, st.Bridge.Backlog, st.Bridge.Pending)
	b.WriteString("early events " + strconv.FormatInt(st.EarlyEvents, 10) + "\n")
	if st.Schedules > 0 {
		fmt.Fprintf(&b, "schedules %d (%d paused, %d due, lag %s): %d fires, %d skips\n", st.Schedules, st.SchedulesPaused,
			st.SchedulesDue, st.ScheduleLag, st.ScheduleFires, st.ScheduleSkips)
	}
	for _, q := range st.Ready {
		fmt.Fprintf(&b, "ready %s: %d (oldest %s, %d waited over %s)\n", q.Controller, q.Depth, q.OldestAge, q.Stale, st.StaleAfter)
	}
	for _, k := range st.Keys {
		fmt.Fprintf(&b, "key %s: %d in flight, %d backlog (concurrency %d, rate %d per %s, burst %d, weight %d)\n",
			k.Key, k.InFlight, k.Backlog, k.Concurrency, k.Rate, k.Per, k.Burst, k.Weight)
	}
	return b.String()
}
