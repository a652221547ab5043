package taskflow

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// The gate shares scarce capacity (a model provider's requests a
// minute, a customer's agents at once) among the flows of a fleet. A
// flow may carry concurrency keys (CreateManagedInput.Concurrency, e.g.
// "tenant:acme", "model:gpt-x") and a priority; a key may have a KeyLimit:
// how many of its flows hold a lease at once, how many claims it takes
// per interval, and its weight in the fair order.
//
// A ready flow with keys or a priority waits in its controller's lane in
// the gate, one slot of the flow space ('<prefix>:{gate}'), instead of
// its shard's ready queue; the lane, every key's limit, its leases and
// its rate bucket live there, so one script (lua/gate_admit.lua) picks
// the next flow every key admits and holds a slot of each, atomically:
// a key is never over-admitted, whatever the races. The flow's shard
// then leases it (lua/claim_take.lua); Go gives the slots back when the
// lease ends. A slot is scored by its lease's expiry, so a worker that
// dies frees its slots when its lease expires, exactly once; the
// engine's tick repairs what a process that died between two steps
// left (a flow admitted but not leased goes back on its lane).
//
// Order: the highest priority first (priority outranks fairness: keep
// it for few flows, a human waiting); within a priority, the fair
// groups (a flow's first key, or none) take turns by weight; within a
// group, the oldest flow first.

// Bounds of concurrency keys and limits.
const (
	// MaxConcurrencyKeys is how many concurrency keys a flow carries.
	maxConcurrencyKeys = 4
	// maxConcurrencyKeyBytes bounds a key's length.
	maxConcurrencyKeyBytes = 128
	// maxPriority is the highest priority (0 is the default and lowest).
	maxPriority = 9
	// maxLimits bounds the keys with a configured limit: Stats and the
	// metrics list each one.
	maxLimits = 1000
	// maxLimitWeight bounds a limit's weight.
	maxLimitWeight = 1000
	// gateGroupBudget is how many fair groups an admission looks at
	// before it gives up (every group's head refused); the next admission
	// of the same claim (up to gateTries) passes over those.
	gateGroupBudget = 16
	// gateTries bounds the admissions one claim makes whose flow its
	// shard then refuses (the entry was stale).
	gateTries = 8
)

// KeyLimit is the capacity of one concurrency key, enforced by every claim
// of a flow that carries the key (Manager.SetKeyLimit). A zero field sets
// no bound.
type KeyLimit struct {
	// Key is the concurrency key: 1 to 128 bytes of letters, digits and
	// "_.:/@=+-".
	Key string `json:"key"`
	// Concurrency bounds how many flows carrying the key hold a lease
	// at once, across the fleet (0 = no bound).
	Concurrency int `json:"concurrency,omitempty"`
	// Rate bounds how many flows carrying the key are claimed per Per
	// (0 = no bound), as a token bucket holding up to Burst claims.
	Rate int `json:"rate,omitempty"`
	// Per is the rate's interval: default 1 s, at least 1 ms, at most 24 h.
	Per time.Duration `json:"per,omitempty"`
	// Burst is how many claims the bucket holds: default Rate.
	Burst int `json:"burst,omitempty"`
	// Weight is the key's share in the fair order, as the first key of
	// its flows: a group of weight 2 is claimed twice as often as one of
	// weight 1 while both have flows ready. Default 1, at most 1,000.
	Weight int `json:"weight,omitempty"`
}

// KeyUsage is a configured key's limit and its live figures (Manager.KeyLimits).
type KeyUsage struct {
	KeyLimit
	// InFlight is how many flows carrying the key hold a lease.
	InFlight int `json:"in_flight"`
	// Backlog is how many ready flows wait in the fair group the key
	// names (flows whose first key it is), in every controller's lane.
	Backlog int `json:"backlog"`
}

// normalized checks l and fills its defaults.
func (l KeyLimit) normalized() (KeyLimit, error) {
	if err := checkConcurrencyKey(l.Key); err != nil {
		return l, err
	}
	if l.Concurrency < 0 || l.Rate < 0 || l.Burst < 0 || l.Weight < 0 || l.Per < 0 {
		return l, fmt.Errorf("%w: limit of %q: negative figures", ErrInvalidData, l.Key)
	}
	if l.Per == 0 {
		l.Per = time.Second
	}
	if l.Per < time.Millisecond || l.Per > 24*time.Hour {
		return l, fmt.Errorf("%w: limit of %q: per %s is not between 1ms and 24h", ErrInvalidData, l.Key, l.Per)
	}
	if l.Burst == 0 {
		l.Burst = l.Rate
	}
	if l.Weight == 0 {
		l.Weight = 1
	}
	if l.Weight > maxLimitWeight {
		return l, fmt.Errorf("%w: limit of %q: weight %d is over %d", ErrInvalidData, l.Key, l.Weight, maxLimitWeight)
	}
	const most = 1_000_000_000
	if l.Concurrency > most || l.Rate > most || l.Burst > most {
		return l, fmt.Errorf("%w: limit of %q: a figure is over %d", ErrInvalidData, l.Key, most)
	}
	return l, nil
}

// encode is the limit as gate.lua reads it.
func (l KeyLimit) encode() string {
	return fmt.Sprintf("%d %d %d %d %d", l.Concurrency, l.Rate, l.Per.Milliseconds(), l.Burst, l.Weight)
}

// decodeLimit reads a stored limit of key.
func decodeLimit(key, v string) (KeyLimit, error) {
	var c, r, per, b, w int64
	if n, err := fmt.Sscanf(v, "%d %d %d %d %d", &c, &r, &per, &b, &w); err != nil || n != 5 {
		return KeyLimit{}, fmt.Errorf("%w: the limit of %q is %q", ErrInvalidData, key, v)
	}
	return KeyLimit{Key: key, Concurrency: int(c), Rate: int(r), Per: time.Duration(per) * time.Millisecond,
		Burst: int(b), Weight: int(w)}, nil
}

// checkConcurrencyKey refuses a key the gate cannot name.
func checkConcurrencyKey(k string) error {
	if k == "" || len(k) > maxConcurrencyKeyBytes {
		return fmt.Errorf("%w: concurrency key %q is not 1 to %d bytes", ErrInvalidData, k, maxConcurrencyKeyBytes)
	}
	for _, r := range k {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_.:/@=+-", r)
		if !ok {
			return fmt.Errorf("%w: concurrency key %q holds %q: use letters, digits and _.:/@=+-", ErrInvalidData, k, r)
		}
	}
	return nil
}

// gateField is a flow's gate field 'gk' for keys and priority: ” for
// none, else the priority and each key on its own line.
func gateField(keys []string, priority int) (string, error) {
	if len(keys) > maxConcurrencyKeys {
		return "", fmt.Errorf("%w: %d concurrency keys, at most %d", ErrInvalidData, len(keys), maxConcurrencyKeys)
	}
	if priority < 0 || priority > maxPriority {
		return "", fmt.Errorf("%w: priority %d is not between 0 and %d", ErrInvalidData, priority, maxPriority)
	}
	for i, k := range keys {
		if err := checkConcurrencyKey(k); err != nil {
			return "", err
		}
		if slices.Contains(keys[:i], k) {
			return "", fmt.Errorf("%w: concurrency key %q given twice", ErrInvalidData, k)
		}
	}
	if len(keys) == 0 && priority == 0 {
		return "", nil
	}
	return strconv.Itoa(priority) + "\n" + strings.Join(keys, "\n"), nil
}

// gateOf is flow f's gate field.
func gateOf(f *Flow) string {
	gk, _ := gateField(f.Concurrency, f.Priority)
	return gk
}

// SetKeyLimit sets (or replaces) the limit of l.Key; it holds from the next
// claim. Lowering a limit under the key's flows in flight takes nothing
// away: the key admits no more until enough leases end. At most 1,000
// keys have a limit (ErrInvalidData beyond). Raising one wakes the
// claims that wait for it.
func (m *Manager) SetKeyLimit(ctx context.Context, l KeyLimit) error {
	l, err := l.normalized()
	if err != nil {
		return err
	}
	return m.store.writeLimit(ctx, l.Key, l.encode())
}

// DeleteKeyLimit removes the limit of key: its flows are admitted without
// bound from the next claim, and the claims waiting for it are woken. A
// key with no limit is not an error.
func (m *Manager) DeleteKeyLimit(ctx context.Context, key string) error {
	if err := checkConcurrencyKey(key); err != nil {
		return err
	}
	return m.store.writeLimit(ctx, key, "")
}

// writeLimit runs gate_limit.lua: v set as key's limit, or ” to delete.
func (s *RedisStore) writeLimit(ctx context.Context, key, v string) error {
	if err := s.ensureLoaded(ctx); err != nil {
		return err
	}
	n, err := s.run(ctx, s.scripts.gateLimit, uuid.Nil, []string{s.keys.gateLimits()}, key, v, maxLimits, s.keys.gateFreed())
	if err != nil {
		return fmt.Errorf("taskflow: limit of %q: %w", key, err)
	}
	if n == int64(-1) {
		return fmt.Errorf("%w: %d keys have a limit already, at most %d", ErrInvalidData, maxLimits, maxLimits)
	}
	return nil
}

// KeyLimits returns every key with a limit, by key, with its flows in
// flight and its backlog.
func (m *Manager) KeyLimits(ctx context.Context) ([]KeyUsage, error) {
	return m.store.keyLimits(ctx)
}

// keyLimits is KeyLimits.
func (s *RedisStore) keyLimits(ctx context.Context) ([]KeyUsage, error) {
	raw, err := s.client.HGetAll(ctx, s.keys.gateLimits()).Result()
	if err != nil {
		return nil, fmt.Errorf("taskflow: limits: %w", err)
	}
	out := make([]KeyUsage, 0, len(raw))
	for k, v := range raw {
		l, err := decodeLimit(k, v)
		if err != nil {
			return nil, err
		}
		out = append(out, KeyUsage{KeyLimit: l})
	}
	slices.SortFunc(out, func(a, b KeyUsage) int { return strings.Compare(a.Key, b.Key) })
	if len(out) == 0 {
		return out, nil
	}
	_, nowMs := s.clock()
	backlog, err := s.gateBacklog(ctx)
	if err != nil {
		return nil, err
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.IntCmd, len(out))
	for i, u := range out {
		cmds[i] = pipe.ZCount(ctx, s.keys.gateHeld(u.Key), "("+nowMs, "+inf")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("taskflow: limits: %w", err)
	}
	for i := range out {
		out[i].InFlight = int(cmds[i].Val())
		out[i].Backlog = backlog[out[i].Key]
	}
	return out, nil
}

// gateBacklog counts the queued flows of every fair group, over every
// controller's lane and level.
func (s *RedisStore) gateBacklog(ctx context.Context) (map[string]int, error) {
	out := map[string]int{}
	var cursor uint64
	for {
		qs, next, err := s.client.SScan(ctx, s.keys.gateQueues(), cursor, "", 500).Result()
		if err != nil {
			return nil, fmt.Errorf("taskflow: gate backlog: %w", err)
		}
		if len(qs) > 0 {
			pipe := s.client.Pipeline()
			cmds := make([]*redis.IntCmd, len(qs))
			for i, q := range qs {
				cmds[i] = pipe.ZCard(ctx, q)
			}
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
				return nil, fmt.Errorf("taskflow: gate backlog: %w", err)
			}
			prefix := s.keys.gateTag() + ":q:"
			for i, q := range qs {
				// '<prefix>:{gate}:q:<lvl>|<group>|<ctl>': a group holds no '|'.
				_, rest, _ := strings.Cut(strings.TrimPrefix(q, prefix), "|")
				group, _, _ := strings.Cut(rest, "|")
				out[group] += int(cmds[i].Val())
			}
		}
		cursor = next
		if cursor == 0 {
			return out, nil
		}
	}
}

// SetConcurrency sets flow id's concurrency keys (at most 4, each 1 to
// 128 bytes of letters, digits and "_.:/@=+-"; the first names its fair
// group) and priority (0 to 9, the highest first; 0 is the default).
// Nil keys and priority 0 make it an ordinary flow again. A ready flow
// moves at once to where it now waits; a leased flow keeps its lease
// and the slots it holds, and the change counts from its next claim. A
// revision-checked mutation (WithExpectedRevision, WithLease, WithCallID
// apply); a terminal flow is ErrAlreadyTerminal. Its event is
// EventConcurrencySet.
func (m *Manager) SetConcurrency(ctx context.Context, id uuid.UUID, keys []string, priority int, opts ...MutationOption) (*Flow, error) {
	mut := applyMutationOptions(opts)
	if err := mut.check(); err != nil {
		return nil, err
	}
	gk, err := gateField(keys, priority)
	if err != nil {
		return nil, err
	}
	if keys == nil {
		keys = []string{}
	}
	payload, _ := marshalJSON(struct {
		Keys     []string `json:"keys"`
		Priority int      `json:"priority"`
	}{keys, priority})
	s := m.store
	_, nowMs := s.clock()
	args := append(s.head(id, nowMs, mut), gk, string(payload))
	f, _, err := s.runFlowScript(ctx, s.scripts.setGate, id, s.keys.flowKeys(id, ""), args)
	s.gateQueue(ctx, f, true)
	return f, err
}

// gateQueue puts f, a flow a call just made ready (or may have), on its
// lane in the gate when it carries keys or a priority, and drops its
// relay entry; what fails is left to an engine's tick, which drives the
// same entry. f may be a lean flow. maybeLeased: the call may have left
// f running under a lease (SetConcurrency, UpdateAndAppend), so the
// lease is read first: a leased flow on its lane would be admitted for
// nothing, its keys' slots and rate tokens spent on a take its shard
// refuses.
func (s *RedisStore) gateQueue(ctx context.Context, f *Flow, maybeLeased bool) {
	if f == nil || f.Status != StatusRunning || (len(f.Concurrency) == 0 && f.Priority == 0) {
		return
	}
	id := f.ID
	if maybeLeased {
		f = nil
	}
	_, _ = s.driveQueued(ctx, id, f)
}

// driveQueued drives the relay entry 'g <id>': it reads the flow (unless
// given), queues it on its lane when it is ready and carries keys or a
// priority, and drops the entry (true when this call dropped it) unless
// a script left it again since it was read (relay_drop.lua): the flow
// was made ready again meanwhile, and the next drive queues it.
func (s *RedisStore) driveQueued(ctx context.Context, id uuid.UUID, f *Flow) (bool, error) {
	var ctl, gk string
	ready := false
	var at int64 // the entry's score as read
	if f != nil {
		ctl, gk, ready = f.ControllerID, gateOf(f), f.Status == StatusRunning
		// The script that made f ready left the entry at its own time.
		at = f.UpdatedAt.UnixMilli()
	} else {
		pipe := s.client.Pipeline()
		rec := pipe.HMGet(ctx, s.keys.flow(id), "status", "controller", "gk")
		leased := pipe.HExists(ctx, s.keys.leases(s.keys.shardOf(id)), id.String())
		entry := pipe.ZScore(ctx, s.keys.relay(s.keys.shardOf(id)), "g "+id.String())
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return false, fmt.Errorf("taskflow: queue %s on its lane: %w", id, err)
		}
		at = int64(entry.Val())
		v := rec.Val()
		if len(v) == 3 {
			st, _ := v[0].(string)
			ctl, _ = v[1].(string)
			gk, _ = v[2].(string)
			ready = FlowStatus(st) == StatusRunning && !leased.Val()
		}
	}
	if ready && gk != "" {
		if err := s.gateEnqueue(ctx, id, ctl, gk); err != nil {
			return false, err
		}
	}
	n, err := s.run(ctx, s.scripts.relayDrop, id, []string{s.keys.relay(s.keys.shardOf(id))}, "g "+id.String(), at)
	if err != nil {
		return false, fmt.Errorf("taskflow: queue %s on its lane: %w", id, err)
	}
	return n == int64(1), nil
}

// gateEnqueue runs gate_enqueue.lua for flow id of controller ctl, whose
// gate field is gk.
func (s *RedisStore) gateEnqueue(ctx context.Context, id uuid.UUID, ctl, gk string) error {
	keys, prio := parseGateField(gk)
	group := ""
	if len(keys) > 0 {
		group = keys[0]
	}
	_, nowMs := s.clock()
	k := s.keys
	_, err := s.run(ctx, s.scripts.gateEnqueue, id,
		[]string{k.gateQueued(), k.gateLevels(ctl), k.gateGroups(prio, ctl), k.gateQueue(prio, group, ctl), k.gateQueues()},
		id.String(), ctl, gk, nowMs, prio, group, k.gateReady(ctl))
	if err != nil {
		return fmt.Errorf("taskflow: queue %s on its lane: %w", id, err)
	}
	return nil
}

// admission is gate_admit.lua's answer.
type admission struct {
	id      uuid.UUID
	gk      string
	left    int64
	counts  []int     // in flight per key, this admission included
	retryAt time.Time // none admitted: when a rate bucket refills (zero: when a slot frees)
	why     string    // none admitted: the first refusal ('' = the lane is empty)
	more    int64     // none admitted: the groups to pass over next, when some were not looked at
}

// gateAdmit runs gate_admit.lua for controller ctl under lease l, passing
// over the first skip groups.
func (s *RedisStore) gateAdmit(ctx context.Context, ctl string, l *Lease, skip int64) (admission, error) {
	_, nowMs := s.clock()
	v, err := s.run(ctx, s.scripts.gateAdmit, uuid.Nil, []string{s.keys.gateTag()},
		ctl, nowMs, l.ExpiresAt.UnixMilli(), l.Token, gateGroupBudget, skip)
	if err != nil {
		return admission{}, fmt.Errorf("taskflow: claim: gate: %w", err)
	}
	arr, ok := v.([]any)
	if !ok || len(arr) < 3 {
		return admission{}, fmt.Errorf("taskflow: claim: gate: unexpected reply %T", v)
	}
	head, _ := arr[0].(string)
	if head == "" {
		var a admission
		if at, _ := arr[1].(string); at != "" {
			ms, _ := strconv.ParseInt(at, 10, 64)
			a.retryAt = time.UnixMilli(ms)
		}
		a.why, _ = arr[2].(string)
		if len(arr) > 3 {
			a.more, _ = arr[3].(int64)
		}
		return a, nil
	}
	id, err := uuid.Parse(head)
	if err != nil {
		return admission{}, fmt.Errorf("%w: the gate admitted %q, no flow id", ErrInvalidData, head)
	}
	a := admission{id: id}
	a.gk, _ = arr[1].(string)
	a.left, _ = arr[2].(int64)
	if len(arr) > 3 {
		// One count may come back as a number (miniredis's table.concat).
		counts := fmt.Sprint(arr[3])
		for _, c := range strings.Split(counts, "\n") {
			if n, err := strconv.Atoi(c); err == nil {
				a.counts = append(a.counts, n)
			}
		}
	}
	return a, nil
}

// gateRelease runs gate_release.lua: the slots of flow id's admission
// under token go back; ended drops its lane entry too.
func (s *RedisStore) gateRelease(ctx context.Context, id uuid.UUID, token string, ended bool) error {
	return s.runGateRelease(ctx, id, token, ended, false)
}

// gateRefused gives back the slots and the rate tokens of flow id's
// admission under token, whose take its shard refused (the lane's entry
// was stale: the flow had ended, was leased, or was changed): no claim
// came of it.
func (s *RedisStore) gateRefused(ctx context.Context, id uuid.UUID, token string) error {
	return s.runGateRelease(ctx, id, token, false, true)
}

// runGateRelease runs gate_release.lua.
func (s *RedisStore) runGateRelease(ctx context.Context, id uuid.UUID, token string, ended, refund bool) error {
	flag := func(b bool) string {
		if b {
			return "1"
		}
		return "0"
	}
	_, nowMs := s.clock()
	if _, err := s.run(ctx, s.scripts.gateRelease, id, []string{s.keys.gateTag()}, id.String(), token, flag(ended), nowMs, flag(refund)); err != nil {
		return fmt.Errorf("taskflow: give back the slots of %s: %w", id, err)
	}
	return nil
}

// gateExtend runs gate_extend.lua: the slots of flow id's admission under
// token last until expiry.
func (s *RedisStore) gateExtend(ctx context.Context, id uuid.UUID, token string, expiry time.Time) error {
	if _, err := s.run(ctx, s.scripts.gateExtend, id, []string{s.keys.gateTag()}, id.String(), token, expiry.UnixMilli()); err != nil {
		return fmt.Errorf("taskflow: extend the slots of %s: %w", id, err)
	}
	return nil
}

// gateTokenMark ends the token of a lease the gate admitted ('.' is no
// character of the other tokens): the lease's slots follow it wherever
// the Lease goes (JSON, another process, LeaseOf).
const gateTokenMark = ".g"

// gated tells whether the gate admitted lease l: its slots follow it
// (Extend) and go back when it ends.
func (l *Lease) gated() bool { return strings.HasSuffix(l.Token, gateTokenMark) }

// gateLeaseEnded gives back the slots of the lease l held, once a
// transition made under it moved flow f (f may be nil when the call
// returned none): a lease the gate admitted, or a flow that carries
// keys. A transition always ends its lease: a flow it leaves running
// went through a wait an early event ended at once, and is ready again.
// A flow with keys that ended with no lease (cancelled while it waited
// on its lane) loses its lane entry. What fails is left to the slots'
// expiry (and a lane entry left to the admission that meets it).
func (s *RedisStore) gateLeaseEnded(ctx context.Context, l *Lease, f *Flow) {
	if l == nil {
		if f != nil && f.Status.IsTerminal() && gateOf(f) != "" {
			// Ended with no lease (a cancel while it waited on its lane):
			// its lane entry goes, so no admission spends a slot or a
			// rate token on it.
			_ = s.gateRelease(ctx, f.ID, "", true)
		}
		return
	}
	if !l.gated() && (f == nil || gateOf(f) == "") {
		return
	}
	_ = s.gateRelease(ctx, l.FlowID, l.Token, f != nil && f.Status.IsTerminal())
}

// gateRepair settles the admissions whose expiry passed (members
// '<id>|<token>' of the gate's admissions zset, read by the tick at
// nowMs): a lease still live under the token (extended by a call that
// died before the gate's slots were) moves its slots to its expiry;
// otherwise the slots go back, and a flow left ready and unleased (its
// admission's process died before leasing it) goes back on its lane.
func (s *RedisStore) gateRepair(ctx context.Context, nowMs string, due []string) (int, error) {
	if len(due) == 0 {
		return 0, nil
	}
	now, _ := strconv.ParseInt(nowMs, 10, 64)
	type entry struct {
		id    uuid.UUID
		token string
		lease *redis.StringCmd
		rec   *redis.SliceCmd
	}
	var ents []entry
	pipe := s.client.Pipeline()
	for _, m := range due {
		raw, token, ok := strings.Cut(m, "|")
		id, err := uuid.Parse(raw)
		if !ok || err != nil {
			continue // not ours: Verify reports it
		}
		ents = append(ents, entry{id: id, token: token,
			lease: pipe.HGet(ctx, s.keys.leases(s.keys.shardOf(id)), raw),
			rec:   pipe.HMGet(ctx, s.keys.flow(id), "status", "controller", "gk")})
	}
	if len(ents) == 0 {
		return 0, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("taskflow: tick: gate: %w", err)
	}
	n := 0
	var first error
	note := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	for _, e := range ents {
		lease, _ := e.lease.Result()
		tok, rest, _ := strings.Cut(lease, "|")
		expStr, _, _ := strings.Cut(rest, "|")
		exp, _ := strconv.ParseInt(expStr, 10, 64)
		if lease != "" && tok == e.token && exp > now {
			if err := s.gateExtend(ctx, e.id, e.token, time.UnixMilli(exp)); err != nil {
				note(err)
				continue
			}
			n++
			continue
		}
		v := e.rec.Val()
		st, ctl, gk := "", "", ""
		if len(v) == 3 {
			st, _ = v[0].(string)
			ctl, _ = v[1].(string)
			gk, _ = v[2].(string)
		}
		status := FlowStatus(st)
		if err := s.gateRelease(ctx, e.id, e.token, st == "" || status.IsTerminal()); err != nil {
			note(err)
			continue
		}
		if status == StatusRunning && lease == "" && gk != "" {
			if err := s.gateEnqueue(ctx, e.id, ctl, gk); err != nil {
				note(err)
				continue
			}
		}
		n++
	}
	return n, first
}

// gateRecord is the lane's record of a queued flow of controller ctl
// whose gate field is gk, as lua/include/gate.lua's gate.fk writes it
// ('<length of ctl> <ctl><gk>': a controller id may hold any text).
func gateRecord(ctl, gk string) string {
	return strconv.Itoa(len(ctl)) + " " + ctl + gk
}
