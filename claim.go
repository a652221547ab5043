package taskflow

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/internal/masterwatch"
)

// A fleet of workers shares the flows of a controller: every script that
// makes a flow runnable (start, resume by any path, create mirrored, a
// released or expired lease) puts it on its controller's ready queue and
// announces it, in the same atomic step. Claim takes one flow off a queue
// and leases it to one worker; mutations made under the lease are fenced.
//
// The worker loop:
//
//	for {
//		f, lease, err := m.Claim(ctx, "kate/inbox-triage", workerID, time.Minute)
//		if err != nil || f == nil { continue }       // nothing ready within the wait
//		// ... do the step; m.Extend(ctx, lease, time.Minute) if it takes long ...
//		m.UpdateState(ctx, f.ID, patch, "next", taskflow.WithLease(lease))
//		m.SetWaiting(ctx, f.ID, cond, taskflow.WithLease(lease)) // or Finish / Fail
//		// leaving running ends the lease; otherwise m.Release(ctx, lease)
//	}
//
// Claim and the hand-off of WithNext lease a flow in the script that
// takes it off its queue (lua/include/take.lua): no worker reads a queue
// and then asks for an id another worker may have taken.

// hubHealthCheck is how often an idle Claim subscription is pinged.
const hubHealthCheck = 30 * time.Second

// Defaults and limits of claiming.
const (
	defaultClaimWait = 30 * time.Second
	minLease         = 100 * time.Millisecond
	// claimSettle is how long at least a Claim whose reply was lost
	// (ErrOutcomeUnknown: the master crashed under it) asks again with
	// the same lease token, when its claim wait is shorter; never longer
	// than claimResend.
	claimSettle = 5 * time.Second
	// claimResend bounds how long one claim asks again. The shard
	// remembers which flow a lease token leased for as long as that lease
	// lives (lua/include/take.lua); a claim asked again after its lease
	// ended is a new claim, and the flow it had leased went back to its
	// queue with the lease.
	claimResend = 10 * time.Second
)

// ClaimOption adjusts Claim.
type ClaimOption func(*claimConfig)

type claimConfig struct{ wait time.Duration }

// WithClaimWait sets how long Claim blocks when nothing is ready (default
// 30 s; 0 does not block). It blocks on a Redis subscription shared by the
// Manager's Claim calls, sending no command while it waits; the only
// traffic is go-redis's health check of that subscription connection (a
// PING every 30 s). Through a failover client (Sentinel), the
// subscription follows the master: once the client dials a new master
// (go-redis drops its command connections on a switch, not a
// subscription on an old master that stays up), the Manager subscribes
// again there and every waiting Claim looks at the queues again.
func WithClaimWait(d time.Duration) ClaimOption {
	return func(c *claimConfig) {
		if d >= 0 {
			c.wait = d
		}
	}
}

// Claim takes the oldest ready flow of controllerID from a shard chosen at
// random among those that have one, and leases it to workerID for lease
// (at least 100 ms), in one script: the script takes the head of that
// shard's queue, so a claim never loses a race to another worker. Which
// shards have ready flows the Manager learns from the announcements it
// subscribes to, from each claim's reply (the flows left), and from one
// read of every queue's length when it starts claiming for the
// controller and when a claim wait ends with nothing found (an
// announcement lost while the subscription reconnected is so found).
// When nothing is ready it blocks up to the claim wait for one to be
// announced, then returns (nil, nil, nil). The lease ends when it expires
// (the engine's tick puts the flow back on the queue), on Release, or
// when the flow leaves running (wait, finish, fail, cancel); a resumed
// flow is queued again for any worker. controllerID and workerID are
// labels: required, valid UTF-8, at most Limits.LabelBytes each (else
// ErrInvalidData).
//
// Under WithReplicaAcks a claim that applied but is not confirmed
// replicated returns the flow and the lease with an error wrapping
// ErrNotReplicated: the flow is leased to workerID; drive it or Release
// it. A claim whose reply was lost is sent again with the same lease
// token until its outcome is known (for up to the claim wait, at least 5
// and at most 10 seconds): the shard remembers for 15 s which flow a
// token leased and answers with it. If the outcome is still unknown, the
// error is an *OutcomeUnknownError (with no flow id: which flow was
// leased, if any, is what is unknown); such a flow stays leased to nobody
// who knows until the lease expires, and is then claimed again.
func (m *Manager) Claim(ctx context.Context, controllerID, workerID string, lease time.Duration, opts ...ClaimOption) (f *Flow, l *Lease, err error) {
	if o := m.store.obs; o != nil && o.Claim != nil {
		defer observeClaim(ctx, o, controllerID, workerID, time.Now(), &f, &l, &err)
	}
	if err := m.store.checkWorker(controllerID, workerID); err != nil {
		return nil, nil, err
	}
	if lease < minLease {
		return nil, nil, fmt.Errorf("%w: lease %s is shorter than %s", ErrInvalidData, lease, minLease)
	}
	cfg := claimConfig{wait: defaultClaimWait}
	for _, o := range opts {
		o(&cfg)
	}
	if err := m.store.ensureLoaded(ctx); err != nil {
		return nil, nil, err
	}
	hub, err := m.readyHub(ctx, controllerID)
	if err != nil {
		return nil, nil, err
	}
	deadline := time.NewTimer(cfg.wait)
	defer deadline.Stop()
	// How long one claim script whose reply was lost is asked again.
	settle := min(max(cfg.wait, claimSettle), claimResend)
	for {
		// Register before looking, so an announcement made while we
		// look wakes us instead of being lost.
		wake := hub.register()
		f, l, err := m.tryClaim(ctx, hub, controllerID, workerID, lease, settle, false)
		if f != nil || err != nil {
			hub.leave(wake)
			return f, l, err
		}
		// A lane held back by a rate limit is looked at again when its
		// bucket refills; one held by a concurrency limit when a slot
		// frees (the gate announces it).
		var refill <-chan time.Time
		var timer *time.Timer
		if at := hub.refillAt(); !at.IsZero() {
			timer = time.NewTimer(max(time.Until(at), time.Millisecond))
			refill = timer.C
		}
		select {
		case <-ctx.Done():
			hub.leave(wake)
			return nil, nil, ctx.Err()
		case <-deadline.C:
			hub.leave(wake)
			return m.tryClaim(ctx, hub, controllerID, workerID, lease, settle, true)
		case <-refill:
			hub.leave(wake)
			hub.announce(hub.lane())
		case <-wake:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// tryClaim claims one ready flow of the controller, or returns none. It
// runs the claim script on a shard the hub believes has ready flows; the
// script takes that queue's head and answers how many are left, which
// the hub keeps. A shard found empty (other processes took its flows
// first) costs one script and is tried no more until announced again.
// When the hub knows of no ready flow, the queues' lengths are read (one
// pipelined round trip) if the hub never read them, or when rescan is
// set (a claim wait ended: an announcement may have been lost).
func (m *Manager) tryClaim(ctx context.Context, h *readyHub, controllerID, workerID string, lease, resend time.Duration, rescan bool) (*Flow, *Lease, error) {
	scanned := false
	for range m.store.keys.shards + 1 {
		shard, seen, ok := h.pick()
		if !ok {
			if scanned || !rescan && !h.needsScan() {
				return nil, nil, nil
			}
			scanned = true
			if err := m.scanReady(ctx, h, controllerID); err != nil {
				return nil, nil, err
			}
			continue
		}
		var f *Flow
		var l *Lease
		var left int64
		var err error
		if shard == h.lane() {
			var a admission
			f, l, a, err = m.claimGated(ctx, controllerID, workerID, lease, resend)
			left = a.left
			h.setRefill(a.retryAt)
			if a.id == uuid.Nil {
				// Held back by a limit, or empty; an admission that took a
				// flow says nothing of the flows it left (other waiters may
				// wait for a slot).
				h.setLaneHeld(a.why != "")
			}
		} else {
			f, l, left, err = m.claimHead(ctx, shard, controllerID, workerID, lease, resend)
		}
		if err != nil {
			return f, l, err
		}
		h.settle(shard, seen, left)
		if f != nil {
			return f, l, nil
		}
	}
	return nil, nil, nil
}

// scanReady reads the length of the controller's ready queue in every
// shard (one pipelined round trip) and hands them to the hub.
func (m *Manager) scanReady(ctx context.Context, h *readyHub, controllerID string) error {
	s := m.store
	seen := h.generations()
	pipe := s.client.Pipeline()
	lens := make([]*redis.IntCmd, s.keys.shards+1)
	for i := range s.keys.shards {
		lens[i] = pipe.ZCard(ctx, s.keys.ready(i, controllerID))
	}
	// The gate's lane: how many priority levels hold flows (any is a
	// reason to ask it).
	lens[h.lane()] = pipe.ZCard(ctx, s.keys.gateLevels(controllerID))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("taskflow: claim: %w", err)
	}
	for i, n := range lens {
		h.settle(i, seen[i], n.Val())
	}
	h.scanned()
	return nil
}

// claimHead runs claim.lua on shard: the flow it leased to the worker
// (nil when the queue had none) and how many ready flows the queue has
// left. A reply lost (the connection broke under it) is asked again with
// the same lease token for up to resend: the shard remembers what that
// token leased.
func (m *Manager) claimHead(ctx context.Context, shard int, controllerID, workerID string, lease, resend time.Duration) (*Flow, *Lease, int64, error) {
	s := m.store
	l := &Lease{ControllerID: controllerID, WorkerID: workerID, Token: newToken()}
	now, nowMs := s.clock()
	l.ExpiresAt = now.Add(lease).Truncate(time.Millisecond)
	args := append(s.head(uuid.Nil, nowMs, mutation{lease: l}),
		l.ExpiresAt.UnixMilli(), jsonString(workerID), controllerID)
	args[0] = ""
	v, err := m.evalResending(ctx, s.scripts.claim, uuid.Nil, s.keys.headKeys(shard), args, resend)
	return decodeClaim(v, l, err)
}

// evalResending runs a claim script (claim.lua, claim_take.lua) for flow
// id (uuid.Nil: a shard's head) and tells the observer; a reply lost
// (the connection broke under it) is asked again with the same
// arguments, hence the same lease token, for up to resend: the shard
// remembers what that token leased. It returns the reply and how the run
// ended.
func (m *Manager) evalResending(ctx context.Context, sc *script, id uuid.UUID, keys []string, args []any, resend time.Duration) (any, error) {
	s := m.store
	if err := s.checkLayout(ctx); err != nil {
		return nil, err
	}
	until := time.Now().Add(resend)
	start := s.observeStart()
	v, raw := s.eval(ctx, sc, keys, args)
	err := runError(raw, id, sc, args)
	for errors.Is(err, ErrOutcomeUnknown) && time.Now().Before(until) {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("taskflow: claim: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
		v, raw = s.eval(ctx, sc, keys, args)
		err = runError(raw, id, sc, args)
	}
	if s.observing() {
		f, _, _, derr := decodeClaim(v, &Lease{}, err)
		fid := uuid.Nil
		if f != nil {
			fid = f.ID
		}
		s.observeOp(ctx, sc, opMeta{}, fid, start, f, raw, derr)
	}
	return v, err
}

// decodeClaim reads claim.lua's reply v (err: how the run ended) into
// the flow leased under l, and the ready flows left.
func decodeClaim(v any, l *Lease, err error) (*Flow, *Lease, int64, error) {
	nre := notReplicated(err)
	if err != nil && nre == nil {
		return nil, nil, 0, fmt.Errorf("taskflow: claim: %w", err)
	}
	arr, ok := v.([]any)
	if !ok || len(arr) < 4 {
		return nil, nil, 0, fmt.Errorf("taskflow: claim: unexpected script reply %T", v)
	}
	left, _ := arr[3].(int64)
	if arr[2] == "none" {
		return nil, nil, left, nil
	}
	f, derr := decodeTaken(arr[1], arr[0], arr[2])
	if derr != nil {
		return nil, nil, left, derr
	}
	id := f.ID
	l.FlowID = id
	if nre != nil {
		// Leased to this worker, not confirmed replicated: the
		// caller gets the flow and the lease with the error.
		nre.Flow, nre.Lease = f, l
		return f, l, left, fmt.Errorf("taskflow: claim: flow %s: %w", id, err)
	}
	return f, l, left, nil
}

// newToken is a lease token: 96 random bits in 16 characters of
// base64url (every audit entry made under the lease carries it).
func newToken() string {
	var b [12]byte
	_, _ = crand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Extend pushes a live lease's expiry to now + d (d at least 100 ms) and
// returns the updated lease. A lease that expired, was released or moved is ErrLeaseLost.
func (m *Manager) Extend(ctx context.Context, l *Lease, d time.Duration) (*Lease, error) {
	if l == nil || d < minLease {
		return nil, fmt.Errorf("%w: a lease and a duration of at least %s are required", ErrInvalidData, minLease)
	}
	s := m.store
	now, nowMs := s.clock()
	next := *l
	next.ExpiresAt = now.Add(d).Truncate(time.Millisecond)
	if l.gated() {
		// The gate's slots first: a slot never lapses while its lease lives.
		if err := s.gateExtend(ctx, l.FlowID, l.Token, next.ExpiresAt); err != nil {
			return nil, err
		}
	}
	args := append(s.head(l.FlowID, nowMs, mutation{lease: l}), next.ExpiresAt.UnixMilli())
	if _, err := s.run(ctx, s.scripts.extendLease, l.FlowID, s.keys.flowKeys(l.FlowID, ""), args...); err != nil {
		if nre := notReplicated(err); nre != nil {
			nre.Lease = &next // extended, not confirmed replicated
			return &next, err
		}
		return nil, err
	}
	return &next, nil
}

// Release gives a leased flow back: a running flow goes back on its ready
// queue for another worker. A lease that is no longer live is
// ErrLeaseLost.
func (m *Manager) Release(ctx context.Context, l *Lease) error {
	if l == nil {
		return fmt.Errorf("%w: a lease is required", ErrInvalidData)
	}
	s := m.store
	_, nowMs := s.clock()
	_, err := s.run(ctx, s.scripts.releaseLease, l.FlowID, s.keys.flowKeys(l.FlowID, ""), s.head(l.FlowID, nowMs, mutation{lease: l})...)
	if l.gated() && (err == nil || applied(err)) {
		// The slots go back, and the flow, ready again, goes back on its
		// lane; what fails is left to the slots' expiry and the tick.
		_ = s.gateRelease(ctx, l.FlowID, l.Token, false)
		_, _ = s.driveQueued(ctx, l.FlowID, nil)
	}
	return err
}

// readyHub is one subscription to a controller's ready announcements in
// every shard, shared by all Claim calls of a Manager. Each announcement
// wakes one registered waiter, oldest first, not all of them: one ready
// flow costs this process one claim. An announcement with no waiter
// still counts for its shard: every Claim looks before it waits.
type readyHub struct {
	mu      sync.Mutex
	waiters []chan struct{}
	// ready is, per shard, how many ready flows the hub believes its
	// queue holds: announcements add one, a claim's reply or a scan
	// sets the count it read. gen counts each shard's announcements, so
	// a count read by a script sent before an announcement does not
	// erase it (settle).
	ready  []int64
	gen    []uint64
	unread bool // no scan yet: the hub knows nothing of flows made before it
	// refill is when the controller's lane in the gate, held back by a
	// rate limit, admits again (zero: no such wait).
	refill time.Time
	// laneHeld: the last admission that took no flow found flows on the
	// lane that a limit held back (not an empty lane). Only then does a
	// slot freed anywhere in the gate (its freed channel, shared by every
	// controller) make this hub look.
	laneHeld bool
	subs     []*redis.PubSub
	channels []string
	done     chan struct{} // closed by close: ends follow
}

// lane is the index, in ready and gen, of the controller's lane in the
// gate (gate.go); the shards come first.
func (h *readyHub) lane() int { return len(h.ready) - 1 }

// setRefill records when the lane admits again after a rate limit held
// it back (zero: it did not).
func (h *readyHub) setRefill(at time.Time) {
	h.mu.Lock()
	h.refill = at
	h.mu.Unlock()
}

// setLaneHeld records whether the last admission found the lane held
// back by a limit.
func (h *readyHub) setLaneHeld(held bool) {
	h.mu.Lock()
	h.laneHeld = held
	h.mu.Unlock()
}

// refillAt is when the lane admits again after a rate limit held it
// back, or zero.
func (h *readyHub) refillAt() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.refill
}

// register adds a waiter; one announcement closes its channel.
func (h *readyHub) register() chan struct{} {
	ch := make(chan struct{})
	h.mu.Lock()
	h.waiters = append(h.waiters, ch)
	h.mu.Unlock()
	return ch
}

// announce counts one more ready flow in shard.
func (h *readyHub) announce(shard int) {
	h.mu.Lock()
	if shard >= 0 && shard < len(h.ready) {
		h.ready[shard]++
		h.gen[shard]++
	}
	h.mu.Unlock()
}

// pick chooses, at random, a shard believed to have a ready flow, with
// its announcement count for settle.
func (h *readyHub) pick() (shard int, seen uint64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for i, r := range h.ready {
		if r > 0 {
			n++
			if rand.IntN(n) == 0 { // reservoir: each candidate equally likely
				shard = i
			}
		}
	}
	if n == 0 {
		return 0, 0, false
	}
	return shard, h.gen[shard], true
}

// settle records that shard's queue held left ready flows when a script
// sent at announcement count seen read it; announcements since then may
// not be in left, so they still count.
func (h *readyHub) settle(shard int, seen uint64, left int64) {
	h.mu.Lock()
	if shard >= 0 && shard < len(h.ready) {
		h.ready[shard] = max(left, 0) + int64(h.gen[shard]-seen)
	}
	h.mu.Unlock()
}

// generations returns every shard's announcement count.
func (h *readyHub) generations() []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]uint64(nil), h.gen...)
}

// needsScan reports whether the hub has never read the queues.
func (h *readyHub) needsScan() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.unread
}

func (h *readyHub) scanned() {
	h.mu.Lock()
	h.unread = false
	h.mu.Unlock()
}

func (h *readyHub) wake() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.waiters) > 0 {
		close(h.waiters[0])
		h.waiters = h.waiters[1:]
	}
}

// leave removes a waiter that stops waiting. If an announcement woke it
// meanwhile, it is passed on: the leaver may not have acted on it.
func (h *readyHub) leave(ch chan struct{}) {
	h.mu.Lock()
	for i, w := range h.waiters {
		if w == ch {
			h.waiters = append(h.waiters[:i], h.waiters[i+1:]...)
			h.mu.Unlock()
			return
		}
	}
	h.mu.Unlock()
	h.wake()
}

// wakeAll closes every waiter's channel: they all look again.
func (h *readyHub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range h.waiters {
		close(w)
	}
	h.waiters = nil
}

func (h *readyHub) close() {
	h.mu.Lock()
	subs := h.subs
	h.subs = nil
	if h.done != nil {
		close(h.done)
		h.done = nil
	}
	h.mu.Unlock()
	for _, ps := range subs {
		_ = ps.Close()
	}
}

// listen counts each announcement on subs for its shard (the channel
// names it) and wakes a waiter.
func (h *readyHub) listen(subs []*redis.PubSub) {
	shardOf := make(map[string]int, len(h.channels))
	for i, ch := range h.channels {
		shardOf[ch] = min(i, h.lane())
	}
	freed := h.channels[len(h.channels)-1] // the gate's, last (readyHub)
	for _, ps := range subs {
		go func(ch <-chan *redis.Message) {
			for msg := range ch {
				if msg.Channel == freed {
					h.mu.Lock()
					held := h.laneHeld
					h.mu.Unlock()
					if !held {
						continue // nothing of this lane waits for a slot
					}
				}
				if shard, ok := shardOf[msg.Channel]; ok {
					h.announce(shard)
				}
				h.wake()
			}
		}(ps.Channel(redis.WithChannelHealthCheckInterval(hubHealthCheck)))
	}
}

// follow subscribes h again on each master change the store's failover
// client sees (internal/masterwatch), and wakes every waiter: an announcement made
// during the switch may have gone to the old master. It ends with h.
func (m *Manager) follow(h *readyHub, w *masterwatch.Watch, seen uint64) {
	h.mu.Lock()
	done := h.done
	h.mu.Unlock()
	for {
		epoch, changed := w.Current()
		if epoch == seen {
			select {
			case <-done:
				return
			case <-changed:
				continue
			}
		}
		seen = epoch
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		subs, err := m.store.subscribe(ctx, h.channels)
		cancel()
		if err != nil {
			// The new master does not answer yet: try again shortly
			// (the next dial elsewhere is another change).
			seen--
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		h.mu.Lock()
		if h.subs == nil { // closed meanwhile
			h.mu.Unlock()
			for _, ps := range subs {
				_ = ps.Close()
			}
			return
		}
		old := h.subs
		h.subs = subs
		h.unread = true // announcements made during the switch are lost
		h.mu.Unlock()
		h.listen(subs)
		for _, ps := range old {
			_ = ps.Close()
		}
		h.wakeAll()
	}
}

// readyHub returns the manager's subscription for controllerID, opening
// it on first use; Close ends it.
func (m *Manager) readyHub(ctx context.Context, controllerID string) (*readyHub, error) {
	m.hubMu.Lock()
	defer m.hubMu.Unlock()
	if h := m.hubs[controllerID]; h != nil {
		return h, nil
	}
	// Every shard's queue, then the controller's lane in the gate and
	// the gate's freed slots, both counted for the lane.
	channels := make([]string, m.store.keys.shards, m.store.keys.shards+2)
	for i := range channels {
		channels[i] = m.store.keys.ready(i, controllerID)
	}
	channels = append(channels, m.store.keys.gateReady(controllerID), m.store.keys.gateFreed())
	// The master change count before subscribing: a change before the
	// subscription is made subscribes again.
	var seen uint64
	if w := m.store.master; w != nil {
		seen, _ = w.Current()
	}
	subs, err := m.store.subscribe(ctx, channels)
	if err != nil {
		return nil, err
	}
	n := len(channels) - 1 // the two gate channels count for one
	h := &readyHub{subs: subs, channels: channels, done: make(chan struct{}),
		ready: make([]int64, n), gen: make([]uint64, n), unread: true}
	h.listen(subs)
	if w := m.store.master; w != nil {
		go m.follow(h, w, seen)
	}
	if m.hubs == nil {
		m.hubs = map[string]*readyHub{}
	}
	m.hubs[controllerID] = h
	return h, nil
}

// LeaseOf returns the lease a flow is held under, or nil when no worker
// holds it (an expired lease not yet collected by a tick is returned with
// its past ExpiresAt).
func (m *Manager) LeaseOf(ctx context.Context, flowID uuid.UUID) (*Lease, error) {
	s := m.store
	if err := s.checkLayout(ctx); err != nil {
		return nil, err
	}
	// The lease table and the flow hash share the flow's hash tag: one
	// pipeline, one round trip, on a cluster too; the record's controller
	// is all the lease needs of the flow.
	pipe := s.client.Pipeline()
	lease := pipe.HGet(ctx, s.keys.leases(s.keys.shardOf(flowID)), flowID.String())
	controller := pipe.HGet(ctx, s.keys.flow(flowID), "controller")
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("taskflow: lease of %s: %w", flowID, err)
	}
	v, err := lease.Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("taskflow: lease of %s: %w", flowID, err)
	}
	parts := strings.SplitN(v, "|", 3)
	ms, perr := strconv.ParseInt(parts[min(1, len(parts)-1)], 10, 64)
	var worker string
	if len(parts) != 3 || perr != nil || json.Unmarshal([]byte(parts[2]), &worker) != nil {
		return nil, fmt.Errorf("%w: malformed lease %q of flow %s", ErrInvalidData, v, flowID)
	}
	ctl, err := controller.Result()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: flow %s", ErrNotFound, flowID)
	}
	if err != nil {
		return nil, fmt.Errorf("taskflow: lease of %s: %w", flowID, err)
	}
	return &Lease{FlowID: flowID, ControllerID: ctl, WorkerID: worker, Token: parts[0],
		ExpiresAt: time.UnixMilli(ms).UTC()}, nil
}

// RequeueExpiredLease ends a lease whose expiry has passed and puts its
// running flow back on its controller's ready queue, as the engine's next
// tick would: an operator's way to hand a stalled worker's flow on now. It
// returns the flow as persisted, or nil when there is nothing to do (no
// lease, or a lease that has not expired yet: a live worker's lease is
// never taken away). The audit log gets a lease_expired event.
func (m *Manager) RequeueExpiredLease(ctx context.Context, flowID uuid.UUID) (*Flow, error) {
	s := m.store
	_, nowMs := s.clock()
	f, _, err := s.runFlowScript(ctx, s.scripts.expireLease, flowID, s.keys.flowKeys(flowID, ""),
		s.head(flowID, nowMs, mutation{}))
	if errors.Is(err, errNoMatch) {
		return nil, nil
	}
	s.gateQueue(ctx, f, false)
	return f, err
}

// claimGated claims a flow of controller ctl from its lane in the gate:
// an admission, then the lease in the flow's shard; an admission whose
// flow its shard refuses (the entry was stale) gives its slots back and
// the next is tried; so are the groups an admission had no budget to
// look at. Returns the flow and lease, or none with whether the lane
// still holds flows and when to look again.
func (m *Manager) claimGated(ctx context.Context, ctl, worker string, lease, resend time.Duration) (*Flow, *Lease, admission, error) {
	s := m.store
	var a admission
	var skip int64
	var retryAt time.Time
	why := ""
	for range gateTries {
		l := &Lease{ControllerID: ctl, WorkerID: worker, Token: newToken() + gateTokenMark}
		now, _ := s.clock()
		l.ExpiresAt = now.Add(lease).Truncate(time.Millisecond)
		var err error
		a, err = s.gateAdmit(ctx, ctl, l, skip)
		if err != nil {
			return nil, nil, a, err
		}
		if a.id == uuid.Nil {
			// The earliest refill and the first refusal of every call.
			if retryAt.IsZero() || !a.retryAt.IsZero() && a.retryAt.Before(retryAt) {
				retryAt = a.retryAt
			}
			if why == "" {
				why = a.why
			}
			a.retryAt, a.why = retryAt, why
			if a.more == 0 {
				return nil, nil, a, nil
			}
			skip = a.more // refused groups ahead: look behind them
			continue
		}
		if s.onAdmit != nil {
			s.onAdmit(a.gk, a.counts)
		}
		l.FlowID = a.id
		f, l, err := m.takeAdmitted(ctx, a, l, resend)
		if f != nil || err != nil {
			return f, l, a, err
		}
		if err := s.gateRefused(ctx, a.id, l.Token); err != nil {
			return nil, nil, a, err
		}
	}
	if a.id != uuid.Nil {
		a.left = 1 // more stale entries than tries: look again
	}
	// (More refused groups than the tries look at: the lane waits for a
	// slot or a refill.)
	return nil, nil, a, nil
}

// takeAdmitted runs claim_take.lua: the lease of the flow a admitted, in
// its shard. A reply lost is asked again with the same lease token for
// up to resend, as claimHead does.
func (m *Manager) takeAdmitted(ctx context.Context, a admission, l *Lease, resend time.Duration) (*Flow, *Lease, error) {
	s := m.store
	_, nowMs := s.clock()
	args := append(s.head(a.id, nowMs, mutation{lease: l}),
		l.ExpiresAt.UnixMilli(), jsonString(l.WorkerID), l.ControllerID, a.gk)
	v, err := m.evalResending(ctx, s.scripts.claimTake, a.id, s.keys.flowKeys(a.id, ""), args, resend)
	f, l2, _, err := decodeClaim(v, l, err)
	if f == nil && err == nil {
		return nil, l, nil
	}
	return f, l2, err
}
