package taskflow

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// The store's writes of a flow record: create, transitions, state
// updates, cancel requests and the store-level compare-and-set; each is
// one script (lua/<name>.lua) run by RedisStore.run.

// create runs create.lua.
func (s *RedisStore) create(ctx context.Context, in CreateManagedInput, mirrored bool) (*Flow, error) {
	return s.createWithID(ctx, uuid.New(), in, mirrored)
}

// createWithID runs create.lua for flow id; a taken id is
// ErrAlreadyExists.
func (s *RedisStore) createWithID(ctx context.Context, id uuid.UUID, in CreateManagedInput, mirrored bool) (*Flow, error) {
	call, err := s.createCall(ctx, id, in, mirrored, childLink{})
	if err != nil {
		return nil, err
	}
	if err := s.recordLayout(ctx); err != nil {
		return nil, err
	}
	f, _, err := s.runFlowScript(ctx, call.script, call.id, call.keys, call.args)
	s.gateQueue(ctx, f, false)
	return created(f, call.id, err)
}

// created is a create's outcome: the flow, or what refused it.
func created(f *Flow, id uuid.UUID, err error) (*Flow, error) {
	if errors.Is(err, ErrIdempotencyConflict) {
		return nil, fmt.Errorf("%w: flow %s was created with this key from other input", ErrIdempotencyConflict, id)
	}
	if err != nil {
		// Applied but not confirmed replicated: the flow exists.
		if !applied(err) {
			f = nil
		}
		return f, fmt.Errorf("taskflow: create flow: %w", err)
	}
	return f, nil
}

// createCall is one run of create.lua: flow id (or the one its
// idempotency key names) from in, a child of kin.parent when set.
type createCall struct {
	scriptCall
	id uuid.UUID
}

// createCall checks in and builds its create.lua run.
func (s *RedisStore) createCall(ctx context.Context, id uuid.UUID, in CreateManagedInput, mirrored bool, kin childLink) (createCall, error) {
	for _, r := range []struct{ name, v string }{
		{"controller_id", in.ControllerID},
		{"goal", in.Goal},
		{"owner_session_key", in.OwnerSessionKey},
	} {
		if strings.TrimSpace(r.v) == "" {
			return createCall{}, fmt.Errorf("%w: %s is required", ErrInvalidData, r.name)
		}
	}
	if err := s.checkFlowText(in.ControllerID, in.Goal, in.OwnerSessionKey, in.RequesterOrigin, in.CurrentStep); err != nil {
		return createCall{}, err
	}
	state, err := toJSON("state", in.State)
	if err != nil {
		return createCall{}, err
	}
	if state == nil {
		state = json.RawMessage(`{}`)
	}
	stateArgs, err := s.stateArgs("state", state, false)
	if err != nil {
		return createCall{}, err
	}
	attrs, err := attrArgs(in.Attributes)
	if err != nil {
		return createCall{}, err
	}
	gk, err := gateField(in.Concurrency, in.Priority)
	if err != nil {
		return createCall{}, err
	}
	payload, _ := marshalJSON(map[string]string{
		"controller_id": in.ControllerID,
		"goal":          in.Goal,
		"current_step":  in.CurrentStep,
	})
	kid, fingerprint, err := s.idempotency(in, mirrored, state)
	if err != nil {
		return createCall{}, err
	}
	if in.IdempotencyKey != "" {
		id = kid // the key names the flow
	}
	_, nowMs := s.clock()
	mir := "0"
	if mirrored {
		mir = "1"
	}
	args := append(s.head(id, nowMs, mutation{}),
		in.ControllerID, in.Goal, in.OwnerSessionKey, in.RequesterOrigin, in.CurrentStep, mir, string(payload), fingerprint,
		s.traceParent(ctx))
	args = append(args, kin.args()...)
	args = append(args, gk)
	args = append(args, attrs...)
	args = append(args, stateArgs...)
	// Only a create can write to an empty flow space: it records the
	// layout (the caller, recordLayout); every other mutation needs a
	// flow, hence a recorded layout.
	return createCall{scriptCall{s.scripts.create, s.keys.flowKeys(id, in.OwnerSessionKey), args}, id}, nil
}

// transitionReq is one run of transition.lua.
type transitionReq struct {
	id      uuid.UUID
	from    FlowStatus // "" = any source the graph allows
	to      FlowStatus
	kind    EventKind
	payload json.RawMessage
	wait    waitArgs
	guard   string
	state   []any
	mut     mutation
	// early: a wait on an external event is met at once by an early
	// event kept for the flow (early.go).
	early bool
	// next is the lease a hand-off makes (WithNext), its expiry set;
	// nil for none.
	next *Lease
}

// transition runs transition.lua at the store's current time.
func (s *RedisStore) transition(ctx context.Context, r transitionReq) (*Flow, error) {
	nx := r.mut.next
	r.mut.next = nil
	if err := r.mut.check(); err != nil {
		return nil, err
	}
	now, nowMs := s.clock()
	if nx != nil {
		if err := nx.check(r.mut); err != nil {
			return nil, err
		}
		*nx.flow, *nx.lease = nil, nil
		r.next = &Lease{ControllerID: r.mut.lease.ControllerID, WorkerID: r.mut.lease.WorkerID,
			Token: nextToken(r.id, r.mut), ExpiresAt: now.Add(nx.d).Truncate(time.Millisecond)}
	}
	sc, keys, args := s.scripts.transition, s.keys.flowKeys(r.id, ""), s.transitionArgs(r, nowMs)
	if r.early {
		sc, keys = s.scripts.transitionEarly, s.keys.withEarly(keys, r.id)
		args = append(args, s.early.memoryArgs()...) // last: see transition_early.lua
	}
	var start time.Time // a hand-off's claim, for the observer
	if nx != nil {
		start = time.Now()
	}
	f, arr, err := s.runFlowScript(ctx, sc, r.id, keys, args, r.meta())
	if nx != nil && applied(err) {
		nf, l, nerr := handedOff(r.next, arr)
		if nerr != nil {
			return f, nerr
		}
		*nx.flow, *nx.lease = nf, l
		if o := s.obs; o != nil && o.Claim != nil && nf != nil {
			var cerr error
			observeClaim(ctx, o, l.ControllerID, l.WorkerID, start, &nf, &l, &cerr)
		}
	}
	if err != nil {
		var te *TransitionError
		if errors.As(err, &te) {
			te.To = r.to
		}
		if f != nil {
			s.moved(ctx, f, r.mut.lease)
		}
		return f, err // f is nil unless applied (ErrNotReplicated)
	}
	s.moved(ctx, f, r.mut.lease)
	return f, nil
}

// moved does what a call leaves to follow-up steps in other slots once
// it moved flow f: its relay (an ended flow's outcome and children), the
// slots in the gate of lease, the lease the call was made under, and f's
// place on its lane when it is ready again. What fails is left to an
// engine's tick.
func (s *RedisStore) moved(ctx context.Context, f *Flow, lease *Lease) {
	s.relayEnded(ctx, f)
	s.gateLeaseEnded(ctx, lease, f)
	s.gateQueue(ctx, f, false) // a transition leaves no running flow leased
}

// meta describes the transition to the observer.
func (r transitionReq) meta() opMeta {
	m := opMeta{event: r.kind}
	if r.kind == EventResumed {
		m.waitKind = waitKindOfGuard(r.guard)
	}
	return m
}

func (s *RedisStore) transitionArgs(r transitionReq, nowMs string) []any {
	state := r.state
	if state == nil {
		state = []any{"none"}
	}
	args := append(s.head(r.id, nowMs, r.mut),
		string(r.to), jsonString(string(r.kind)), string(r.payload),
		r.wait.json, r.wait.timerMs, r.wait.corr, r.guard, string(r.from))
	if r.next != nil {
		args = append(args, r.next.Token, r.next.ExpiresAt.UnixMilli(), jsonString(r.next.WorkerID))
	} else {
		args = append(args, "", "", "")
	}
	return append(args, state...)
}

// nextToken is the token of a hand-off's lease: random, or, for a call
// with a caller's id (WithCallID), derived from it, so that a repeat of
// the call names the same lease and is handed the same flow
// (lua/include/take.lua remembers the token's flow).
func nextToken(id uuid.UUID, mut mutation) string {
	if !mut.callSet {
		return newToken()
	}
	sum := sha256.Sum256([]byte("taskflow next lease\x00" + id.String() + "\x00" + mut.call))
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// check refuses a hand-off the call cannot make.
func (nx *nextClaim) check(mut mutation) error {
	switch {
	case nx.flow == nil || nx.lease == nil:
		return fmt.Errorf("%w: WithNext needs somewhere to put the next flow and lease", ErrInvalidData)
	case mut.lease == nil:
		return fmt.Errorf("%w: WithNext needs WithLease: the next flow goes to the same worker", ErrInvalidData)
	case nx.d < minLease:
		return fmt.Errorf("%w: WithNext: lease %s is shorter than %s", ErrInvalidData, nx.d, minLease)
	}
	return nil
}

// handedOff decodes the next flow of a transition's reply (transition.lua):
// the flow and lease l (its FlowID set), or nils when none was ready.
func handedOff(l *Lease, arr []any) (*Flow, *Lease, error) {
	if len(arr) < 5 {
		return nil, nil, nil
	}
	f, err := decodeTaken(arr[4], arr[3], "full") // a handed flow always comes whole
	if err != nil {
		return nil, nil, err
	}
	l.FlowID, l.ControllerID = f.ID, f.ControllerID
	return f, l, nil
}

// updateState runs update_state.lua.
func (s *RedisStore) updateState(ctx context.Context, id uuid.UUID, patch json.RawMessage, nextStep string, mut mutation) (*Flow, error) {
	if err := checkText("the next step", nextStep); err != nil {
		return nil, err
	}
	if err := checkLen("next_step", nextStep, s.limits.LabelBytes); err != nil {
		return nil, err
	}
	if err := mut.check(); err != nil {
		return nil, err
	}
	var buf [stackMembers]member
	state, err := s.splitState(buf[:0], "patch", patch, true)
	if err != nil {
		return nil, err
	}
	keys, ids := s.keys.flowKeysAndID(id)
	args := make([]any, 0, headLen+2+state.argLen())
	args = s.appendHead(args, ids, s.clockMs(), mut)
	// The event's payload and the state change's text are written to one
	// buffer, and those arguments cut from it: one allocation for them.
	step := stringOrNull(nextStep)
	var b strings.Builder
	b.Grow(len(`{"patch":null,"next_step":}`) + len(patch) + len(step) + state.textLen())
	writeUpdatePayload(&b, patch, step)
	payloadLen := b.Len()
	state.writeText(&b)
	text := b.String()
	args = append(args, nextStep, text[:payloadLen])
	args = state.appendArgs(args, text[payloadLen:])
	f, _, err := s.runFlowScript(ctx, s.scripts.updateState, id, keys, args)
	return f, err
}

// writeUpdatePayload writes the payload of update_state's event to b:
// the patch (null for none) and step, the next step as JSON.
func writeUpdatePayload(b *strings.Builder, patch json.RawMessage, step string) {
	b.WriteString(`{"patch":`)
	if patch == nil {
		b.WriteString("null")
	}
	b.Write(patch)
	b.WriteString(`,"next_step":`)
	b.WriteString(step)
	b.WriteString(`}`)
}

// requestCancel runs request_cancel.lua.
func (s *RedisStore) requestCancel(ctx context.Context, id uuid.UUID, mut mutation) (*Flow, error) {
	if err := mut.check(); err != nil {
		return nil, err
	}
	_, nowMs := s.clock()
	f, _, err := s.runFlowScript(ctx, s.scripts.requestCancel, id, s.keys.flowKeys(id, ""), s.head(id, nowMs, mut))
	return f, err
}

// UpdateAndAppend writes the whole flow record f if the stored revision is
// still f.Revision, together with one audit event of kind and payload; the
// stored flow gets revision f.Revision+1 and the store's current time as
// UpdatedAt. ID, OwnerSessionKey and CreatedAt cannot change. On a stale
// revision it returns a *RevisionMismatchError (ErrRevisionMismatch) and
// writes nothing. Indexes (status, timers, correlation, controller)
// follow the record; f.Attributes is not written (Manager.SetAttributes
// changes them); the state machine is not checked: this is the layer
// below the Manager.
func (s *RedisStore) UpdateAndAppend(ctx context.Context, f *Flow, kind EventKind, payload any) (*Flow, *FlowEvent, error) {
	if f == nil {
		return nil, nil, fmt.Errorf("%w: nil flow", ErrInvalidData)
	}
	if !f.Status.Valid() {
		return nil, nil, fmt.Errorf("%w: unknown flow status %q", ErrInvalidData, f.Status)
	}
	if err := s.checkEventKind(kind); err != nil {
		return nil, nil, err
	}
	if err := s.checkFlowText(f.ControllerID, f.Goal, f.OwnerSessionKey, f.RequesterOrigin, f.CurrentStep); err != nil {
		return nil, nil, err
	}
	state, err := toJSON("state", f.State)
	if err != nil {
		return nil, nil, err
	}
	if state == nil {
		state = json.RawMessage(`{}`)
	}
	stateArgs, err := s.stateArgs("state", state, false)
	if err != nil {
		return nil, nil, err
	}
	pl, err := toJSON("event payload", payload)
	if err != nil {
		return nil, nil, err
	}
	if pl == nil {
		pl = json.RawMessage(`{}`)
	}
	var wait waitArgs
	if f.Status == StatusWaiting && f.Wait != nil {
		wait, err = waitIndexArgs(f.ID, f.Wait)
		if err == nil {
			err = s.checkWaitLabels(wait)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	cancel := "0"
	if f.CancelRequested {
		cancel = "1"
	}
	_, nowMs := s.clock()
	rev := f.Revision
	args := append(s.head(f.ID, nowMs, mutation{expected: &rev, epoch: f.Epoch}),
		string(f.Status), f.ControllerID, f.Goal, f.OwnerSessionKey, f.RequesterOrigin, f.CurrentStep,
		cancel, wait.json, wait.timerMs, wait.corr, jsonString(string(kind)), string(pl))
	args = append(args, stateArgs...)
	nf, arr, err := s.runFlowScript(ctx, s.scripts.writeFlow, f.ID, s.keys.flowKeys(f.ID, ""), args)
	if nf == nil {
		return nil, nil, err
	}
	// Applied; err is nil or ErrNotReplicated, returned beside both.
	s.relayEnded(ctx, nf)
	s.gateQueue(ctx, nf, true)
	numbered, _ := arr[1].(string)
	ev, derr := decodeNumbered(f.ID, numbered)
	if derr != nil {
		return nil, nil, derr
	}
	return nf, ev, err
}

// maxIdempotencyKeyBytes caps CreateManagedInput.IdempotencyKey.
const maxIdempotencyKeyBytes = 1024

// IdempotentFlowID returns the id a create with idempotency key key gets
// in this flow space: a version 5 (name-based) UUID of the key, in a
// namespace derived from the store's prefix. The same key gives the same
// id in every process; Get(IdempotentFlowID(key)) finds the flow a key
// made.
func (s *RedisStore) IdempotentFlowID(key string) uuid.UUID {
	return uuid.NewSHA1(s.idemSpace, []byte(key))
}

// idempotency returns the flow id and input fingerprint of a create: a
// new random id and no fingerprint without a key.
func (s *RedisStore) idempotency(in CreateManagedInput, mirrored bool, state json.RawMessage) (uuid.UUID, string, error) {
	if in.IdempotencyKey == "" {
		return uuid.New(), "", nil
	}
	if len(in.IdempotencyKey) > maxIdempotencyKeyBytes {
		return uuid.Nil, "", fmt.Errorf("%w: idempotency key is %d bytes, over the limit of %d", ErrInvalidData, len(in.IdempotencyKey), maxIdempotencyKeyBytes)
	}
	mode := string(RuntimeManaged)
	if mirrored {
		mode = string(RuntimeMirrored)
	}
	// A JSON array of strings is an unambiguous encoding of the input.
	input := []string{mode, in.ControllerID, in.Goal, in.OwnerSessionKey, in.RequesterOrigin, in.CurrentStep, string(state)}
	// Attributes join the input only when given, so a flow made without
	// them keeps the fingerprint it had before attributes existed.
	for _, n := range sortedNames(in.Attributes) {
		input = append(input, "@"+n, in.Attributes[n])
	}
	// So do concurrency keys and priority ('#' cannot start a name).
	if gk, _ := gateField(in.Concurrency, in.Priority); gk != "" {
		input = append(input, "#gate", gk)
	}
	canon, err := json.Marshal(input)
	if err != nil {
		return uuid.Nil, "", fmt.Errorf("%w: %v", ErrInvalidData, err)
	}
	sum := sha256.Sum256(canon)
	return s.IdempotentFlowID(in.IdempotencyKey), hex.EncodeToString(sum[:16]), nil
}

// validFingerprint reports whether fp, a flow's 'idem' field, is what
// create.lua stores: 32 lower-case hex digits, on a version 5 id.
func validFingerprint(id uuid.UUID, fp string) bool {
	if id.Version() != 5 || len(fp) != 32 {
		return false
	}
	for _, c := range fp {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// pruneTerminalFlows deletes terminal flows whose last update is older than
// olderThan, with their state, steps, events, early events (kept for the
// flow: a flow made again with the same id does not take them) and index
// entries, and returns how many it deleted. It works shard by shard in batches of 100
// flows, and never touches a flow that is not terminal.
func (s *RedisStore) pruneTerminalFlows(ctx context.Context, olderThan time.Duration) (int, error) {
	if olderThan < 0 {
		return 0, fmt.Errorf("%w: negative retention %s", ErrInvalidData, olderThan)
	}
	now, _ := s.clock()
	cutoff := now.Add(-olderThan).UnixMilli()
	total := 0
	for shard := 0; shard < s.keys.shards; shard++ {
		for _, st := range allStatuses {
			if !st.IsTerminal() {
				continue
			}
			n, err := s.pruneIndex(ctx, shard, st, cutoff)
			total += n
			if err != nil {
				return total, err
			}
		}
	}
	return total, nil
}

const pruneBatch = 100

func (s *RedisStore) pruneIndex(ctx context.Context, shard int, st FlowStatus, cutoff int64) (int, error) {
	key := s.keys.status(shard, st)
	total := 0
	for {
		// Entered a terminal status before the cutoff implies last
		// updated before it: terminal flows are not updated any more.
		ids, err := s.client.ZRangeByScore(ctx, key, &redis.ZRangeBy{
			Min: "-inf", Max: "(" + strconv.FormatInt(cutoff, 10), Count: pruneBatch,
		}).Result()
		if err != nil {
			return total, fmt.Errorf("taskflow: prune: %w", err)
		}
		if len(ids) == 0 {
			return total, nil
		}
		n, dropped, err := s.pruneIDs(ctx, key, ids, cutoff)
		total += n
		if err != nil {
			return total, err
		}
		if n+dropped == 0 {
			// The whole batch refused (changing under us): leave it
			// for the next call rather than spin.
			return total, nil
		}
	}
}

// pruneIDs prunes the flows named by one batch of index entries of key.
// An entry whose flow is gone (or whose id is not a UUID) is dropped from
// the index and counted as progress, not as a pruned flow.
func (s *RedisStore) pruneIDs(ctx context.Context, key string, raw []string, cutoff int64) (pruned, dropped int, err error) {
	ids := make([]uuid.UUID, 0, len(raw))
	var stale []any
	for _, r := range raw {
		id, err := uuid.Parse(r)
		if err != nil {
			stale = append(stale, r)
			continue
		}
		ids = append(ids, id)
	}
	flows, err := s.getMany(ctx, ids)
	if err != nil {
		return 0, 0, err
	}
	found := make(map[uuid.UUID]bool, len(flows))
	for _, f := range flows {
		found[f.ID] = true
	}
	for _, id := range ids {
		if !found[id] {
			stale = append(stale, id.String())
		}
	}
	if len(stale) > 0 {
		if err := s.client.ZRem(ctx, key, stale...).Err(); err != nil {
			return 0, 0, fmt.Errorf("taskflow: prune: %w", err)
		}
	}
	pipe := s.client.Pipeline()
	stepCmds := make([]*redis.StringSliceCmd, len(flows))
	for i, f := range flows {
		stepCmds[i] = pipe.ZRange(ctx, s.keys.steps(f.ID), 0, -1)
	}
	if len(flows) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, len(stale), fmt.Errorf("taskflow: prune: %w", err)
		}
	}
	calls := make([]scriptCall, len(flows))
	for i, f := range flows {
		// Key 16 is the owner index even for a flow without an owner
		// (the script then leaves it alone), so the keys after it stay
		// where the script looks for them.
		keys := append(s.keys.flowKeys(f.ID, ""), s.keys.owner(s.keys.shardOf(f.ID), f.OwnerSessionKey))
		keys = s.keys.withEarlyFlow(keys, f.ID)
		runs := stepCmds[i].Val()
		for _, r := range runs {
			keys = append(keys, s.keys.step(f.ID, r))
		}
		calls[i] = scriptCall{s.scripts.pruneFlow, keys, []any{f.ID.String(), cutoff, len(runs)}}
	}
	vals, errs := s.runPipelined(ctx, calls)
	for i := range calls {
		if errs[i] != nil {
			return pruned, len(stale), fmt.Errorf("taskflow: prune %s: %w", flows[i].ID, errs[i])
		}
		if v, _ := vals[i].(int64); v == 1 {
			pruned++
		}
	}
	return pruned, len(stale), nil
}
