package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Flows of flows: a parent starts children (StartChild), waits on them
// with a join (WaitChildren), and resumes with their outcomes; a parent
// that ends closes its children by each one's policy. A child lives in
// its own shard, often another slot than its parent's, so what crosses
// between them goes through the relay: a flow's terminal transition
// records, in the same script, the work it leaves (its outcome for its
// parent, its children to close) in its shard's relay zset; the call
// that ended it drives that work at once, and an engine's tick drives
// what a dead process left (lua/include/queues.lua relay_end). The
// parent's shard keeps each child's outcome once (HSETNX), so a second
// delivery counts nothing.

// ChildInput describes one child to start under a parent.
type ChildInput struct {
	// Key names the child among its parent's children (valid UTF-8, at
	// most 900 bytes and Limits.LabelBytes): the child's id is derived
	// from the parent's and the key, so starting the same key under the
	// same parent again, a retried call, returns the child made the first
	// time. "" picks a random key: a retry then starts another child.
	Key string `json:"key,omitempty"`
	// Flow is the child's input, as CreateManaged takes it; its
	// IdempotencyKey must be empty (Key plays that part).
	Flow CreateManagedInput `json:"flow"`
	// OnParentClose is what the parent's end (finished, failed or
	// cancelled) does to the child while it has not ended: ""
	// means ParentCloseCancel.
	OnParentClose ParentClosePolicy `json:"on_parent_close,omitempty"`
}

// ParentClosePolicy is what a parent's end does to a child still
// running or waiting.
type ParentClosePolicy string

// Parent-close policies.
const (
	// ParentCloseCancel cancels the child (the default).
	ParentCloseCancel ParentClosePolicy = "cancel"
	// ParentCloseRequestCancel requests the child's cancel: its worker
	// sees ErrCancelPending and ends it, or the engine's tick cancels it
	// while it waits.
	ParentCloseRequestCancel ParentClosePolicy = "request_cancel"
	// ParentCloseAbandon leaves the child be: it runs on, and its
	// outcome is still kept for the parent's record.
	ParentCloseAbandon ParentClosePolicy = "abandon"
)

// Child is one child of a parent, as ListChildren reports it.
type Child struct {
	ID  uuid.UUID `json:"id"`
	Key string    `json:"key"`
	// Status is the child's outcome once its parent has it (Ended), else
	// the child's status now; "" for a child that is gone (pruned, or
	// its start died before it was made: Verify reports a parent that
	// waits on one).
	Status FlowStatus `json:"status"`
	// Ended tells that the parent has the child's outcome.
	Ended bool `json:"ended"`
	// State is the child's final state, kept in its outcome when it is at
	// most 4 KiB of JSON (StateOmitted otherwise).
	State        json.RawMessage `json:"state,omitempty"`
	StateOmitted bool            `json:"state_omitted,omitempty"`
	// Error is a failed child's failure reason.
	Error string `json:"error,omitempty"`
}

// childStateBytes is the largest final state a child's outcome carries.
const childStateBytes = 4 << 10

// maxChildKeyBytes bounds a child's key: it is part of the idempotency
// key its id is derived from (at most 1024 bytes).
const maxChildKeyBytes = 900

// relayGrace is how long a relay entry waits before an engine's tick
// drives it: lua/include/queues.lua RELAY_GRACE_MS.
const relayGrace = 10 * time.Second

// childPipeline is how many creates one pipeline of StartChildren sends.
const childPipeline = 500

// StartChild starts a child flow under parentID: the child is created
// running (its controller's workers claim it, as any running flow) with
// ParentID set, and with the trace of ctx (Flow.TraceParent) or, when ctx
// carries none, its parent's; and the parent's register of children counts it before
// it exists, so the parent's join and close see it whatever fails after.
// See StartChildren for the rules; this is StartChildren with one child.
func (m *Manager) StartChild(ctx context.Context, parentID uuid.UUID, in ChildInput) (*Flow, error) {
	fs, err := m.store.startChildren(ctx, parentID, []ChildInput{in})
	if len(fs) == 1 {
		return fs[0], err
	}
	return nil, err
}

// StartChildren starts children under parentID in 2 + ⌈n/500⌉ round
// trips (their register on the parent's shard, their creates in
// pipelines of 500, each split by Redis node, and a check of the parent;
// with WithReplicaAcks the creates go one by one), and returns
// them in the order given. The parent must exist (ErrNotFound), must not
// have ended (ErrAlreadyTerminal) nor have a cancel request
// (ErrCancelPending); it may be a child itself, down to
// Limits.ChildDepth, and may hold up to Limits.ChildrenPerFlow children
// (beyond either: ErrInvalidData, nothing started). Keys repeated in one
// call are refused. A key started before returns its child as it is now;
// the same key with other input is ErrIdempotencyConflict.
//
// When the parent waits on its children (WaitChildren), each child's
// end is delivered to it exactly once; when it resumes, its state holds
// "children":
//
//	{"total":5,"finished":4,"failed":1,"cancelled":0,"pending":0,
//	 "why":"met|settled|fail_fast|timeout","results":[<outcome>,…]}
//
// where an outcome is {"id","key","status","state","error"} (state when at
// most 4 KiB, else "state_omitted":true), in start order, for the
// children that ended; "results_omitted":true replaces results that
// would take more than half of what the state has left (ListChildren
// pages them). The parent's end closes the children still running by
// their OnParentClose.
//
// A child started while its parent ends is closed by this call once it
// exists. On a failed call, the children listed before the failure may
// exist; the same call again completes it.
func (m *Manager) StartChildren(ctx context.Context, parentID uuid.UUID, children []ChildInput) ([]*Flow, error) {
	return m.store.startChildren(ctx, parentID, children)
}

// ListChildren pages a parent's children in start order: WithLimit
// (default 100, at most 1000) and WithCursor (the cursor a page
// returned; "" for the first). It returns the page and the next page's
// cursor, "" after the last. A parent that never started a child, or is
// gone, has none.
func (m *Manager) ListChildren(ctx context.Context, parentID uuid.UUID, opts ...ListOption) ([]Child, string, error) {
	return m.store.listChildren(ctx, parentID, opts)
}

// childLink is what a child's create stores of its parent.
type childLink struct {
	parent uuid.UUID
	key    string
	close  ParentClosePolicy
	depth  int
}

// args are ARGV 19..22 of create.lua.
func (k childLink) args() []any {
	if k.parent == uuid.Nil {
		return []any{"", "", "", ""}
	}
	return []any{k.parent.String(), k.key, string(k.close), strconv.Itoa(k.depth)}
}

// depthArg and traceArg are the positions of the depth and the
// traceparent in a create's args (create.lua ARGV 22 and 18).
const (
	depthArg = 21
	traceArg = 17
)

// childIdempotencyKey is the idempotency key a child's id is derived
// from.
func childIdempotencyKey(parent uuid.UUID, key string) string {
	return "taskflow child " + parent.String() + " " + key
}

// checkChildren validates children and builds their creates.
func (s *RedisStore) checkChildren(ctx context.Context, parentID uuid.UUID, children []ChildInput) ([]createCall, error) {
	if parentID == uuid.Nil {
		return nil, fmt.Errorf("%w: a parent id is required", ErrInvalidData)
	}
	if len(children) > s.limits.ChildrenPerFlow {
		return nil, fmt.Errorf("%w: %d children in one call, over Limits.ChildrenPerFlow (%d)", ErrInvalidData, len(children), s.limits.ChildrenPerFlow)
	}
	calls := make([]createCall, len(children))
	seen := make(map[string]int, len(children))
	for i, in := range children {
		key := in.Key
		if key == "" {
			key = uuid.NewString()
		}
		if err := checkText("a child key", key); err != nil {
			return nil, err
		}
		if err := checkLens(lim("child key", key, min(maxChildKeyBytes, s.limits.LabelBytes))); err != nil {
			return nil, err
		}
		if j, dup := seen[key]; dup {
			return nil, fmt.Errorf("%w: children %d and %d have the same key %q", ErrInvalidData, j, i, key)
		}
		seen[key] = i
		if in.Flow.IdempotencyKey != "" {
			return nil, fmt.Errorf("%w: child %q: a child's id comes from its key; leave Flow.IdempotencyKey empty", ErrInvalidData, key)
		}
		pc := in.OnParentClose
		switch pc {
		case "":
			pc = ParentCloseCancel
		case ParentCloseCancel, ParentCloseRequestCancel, ParentCloseAbandon:
		default:
			return nil, fmt.Errorf("%w: child %q: unknown parent-close policy %q (want cancel, request_cancel or abandon)", ErrInvalidData, key, pc)
		}
		flow := in.Flow
		flow.IdempotencyKey = childIdempotencyKey(parentID, key)
		call, err := s.createCall(ctx, uuid.Nil, flow, true, childLink{parent: parentID, key: key, close: pc})
		if err != nil {
			return nil, fmt.Errorf("child %q: %w", key, err)
		}
		calls[i] = call
	}
	return calls, nil
}

// startChildren is StartChildren.
func (s *RedisStore) startChildren(ctx context.Context, parentID uuid.UUID, children []ChildInput) ([]*Flow, error) {
	if len(children) == 0 {
		return nil, nil
	}
	calls, err := s.checkChildren(ctx, parentID, children)
	if err != nil {
		return nil, err
	}
	if err := s.checkLayout(ctx); err != nil {
		return nil, err
	}
	args := make([]any, 0, 3+len(calls))
	args = append(args, parentID.String(), s.limits.ChildrenPerFlow, s.limits.ChildDepth)
	for _, c := range calls {
		args = append(args, c.id.String())
	}
	v, err := s.run(ctx, s.scripts.spawnChildren, parentID, s.keys.flowKeys(parentID, ""), args...)
	if err != nil && !applied(err) {
		return nil, fmt.Errorf("taskflow: start children of %s: %w", parentID, err)
	}
	arr, _ := v.([]any)
	if len(arr) < 1 {
		return nil, fmt.Errorf("taskflow: start children of %s: unexpected reply %v", parentID, v)
	}
	depth, _ := arr[0].(int64)
	inherit := ""
	if len(arr) > 2 && s.traceParent(ctx) == "" {
		// A child started outside any trace joins its parent's.
		inherit, _ = arr[2].(string)
	}
	for i := range calls {
		calls[i].args[depthArg] = strconv.FormatInt(depth, 10)
		if inherit != "" {
			calls[i].args[traceArg] = inherit
		}
	}
	flows, err := s.createChildren(ctx, calls)
	for _, f := range flows {
		s.gateQueue(ctx, f, false) // children with concurrency keys or a priority
	}
	if err != nil {
		return flows, fmt.Errorf("taskflow: start children of %s: %w", parentID, err)
	}
	// A parent that ended while its children were made closed those that
	// existed then: close the others now.
	status, err := s.client.HGet(ctx, s.keys.flow(parentID), "status").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return flows, fmt.Errorf("taskflow: start children of %s: read the parent: %w", parentID, err)
	}
	if FlowStatus(status).IsTerminal() || errors.Is(err, redis.Nil) {
		if _, err := s.closeChildren(ctx, parentID); err != nil {
			return flows, fmt.Errorf("taskflow: start children of %s: the parent ended: %w", parentID, err)
		}
	}
	return flows, nil
}

// createChildren runs the children's creates: pipelined, or one by one
// when writes wait for replicas (WithReplicaAcks: a pipeline does not).
func (s *RedisStore) createChildren(ctx context.Context, calls []createCall) ([]*Flow, error) {
	flows := make([]*Flow, len(calls))
	if s.replicas > 0 {
		for i, c := range calls {
			f, _, err := s.runFlowScript(ctx, c.script, c.id, c.keys, c.args)
			flows[i], err = created(f, c.id, err)
			if err != nil {
				return flows, err
			}
		}
		return flows, nil
	}
	for from := 0; from < len(calls); from += childPipeline {
		batch := calls[from:min(from+childPipeline, len(calls))]
		sc := make([]scriptCall, len(batch))
		for i, c := range batch {
			sc[i] = c.scriptCall
		}
		vals, errs := s.runPipelined(ctx, sc)
		var first error
		for i, c := range batch {
			var f *Flow
			err := errs[i]
			if err == nil {
				arr, _ := vals[i].([]any)
				if len(arr) < 2 {
					err = fmt.Errorf("taskflow: unexpected script reply %T", vals[i])
				} else {
					f, err = decodeFlowReply(c.id, arr, true)
				}
			} else {
				err = scriptError(err, c.id)
			}
			flows[from+i], err = created(f, c.id, err)
			if err != nil && first == nil {
				first = err
			}
		}
		if first != nil {
			return flows, first
		}
	}
	return flows, nil
}

// childOutcome is a child's outcome as its parent keeps it.
type childOutcome struct {
	ID           string          `json:"id"`
	Key          string          `json:"key"`
	Status       FlowStatus      `json:"status"`
	State        json.RawMessage `json:"state,omitempty"`
	StateOmitted bool            `json:"state_omitted,omitempty"`
	Error        string          `json:"error,omitempty"`
}

// outcomeOf is the outcome of f, an ended child read with its state.
func outcomeOf(f *Flow) ([]byte, error) {
	o := childOutcome{ID: f.ID.String(), Key: f.ChildKey, Status: f.Status}
	if len(f.State) <= childStateBytes {
		o.State = f.State
	} else {
		o.StateOmitted = true
	}
	if f.Status == StatusFailed {
		var st struct {
			Failure struct {
				Reason string `json:"reason"`
			} `json:"failure"`
		}
		if json.Unmarshal(f.State, &st) == nil {
			o.Error = st.Failure.Reason
		}
	}
	return marshalJSON(o)
}

// relayEnded drives at once the relay work of f, a flow a call just
// moved (its outcome to its parent, its children's close); what fails
// is left to an engine's tick, which drives the same entries after
// relayGrace. f may be a lean flow.
func (s *RedisStore) relayEnded(ctx context.Context, f *Flow) {
	if f == nil || !f.Status.IsTerminal() || s.noRelay {
		return
	}
	if f.ParentID != uuid.Nil {
		known := f
		if f.State == nil {
			known = nil // a lean reply: the outcome needs the state
		}
		_, _ = s.deliverOutcome(ctx, f.ID, known)
	}
	if f.Children > 0 {
		_, _ = s.closeChildren(ctx, f.ID)
	}
}

// relayDone drops a relay entry once its work is done, and tells whether
// this call dropped it (two engines may do the same work: one counts it).
func (s *RedisStore) relayDone(ctx context.Context, id uuid.UUID, kind byte) (bool, error) {
	n, err := s.client.ZRem(ctx, s.keys.relay(s.keys.shardOf(id)), string(kind)+" "+id.String()).Result()
	return n == 1, err
}

// deliverOutcome hands the ended child childID's outcome to its parent
// (deliver_child.lua) and drops its relay entry; f is the child as the
// call that ended it returned it (with its state), or nil to read it.
func (s *RedisStore) deliverOutcome(ctx context.Context, childID uuid.UUID, f *Flow) (bool, error) {
	if f == nil {
		var err error
		f, err = s.get(ctx, childID)
		if errors.Is(err, ErrNotFound) {
			return s.relayDone(ctx, childID, 'd')
		}
		if err != nil {
			return false, err
		}
	}
	if f.ParentID == uuid.Nil || !f.Status.IsTerminal() {
		return s.relayDone(ctx, childID, 'd') // an entry nothing needs
	}
	out, err := outcomeOf(f)
	if err != nil {
		return false, err
	}
	if err := s.deliverChild(ctx, f.ParentID, childID, f.Status, out); err != nil {
		return false, err
	}
	return s.relayDone(ctx, childID, 'd')
}

// deliverChild runs deliver_child.lua: child's outcome out, of status st, to
// parent.
func (s *RedisStore) deliverChild(ctx context.Context, parent, child uuid.UUID, st FlowStatus, out []byte) error {
	_, nowMs := s.clock()
	args := append(s.head(parent, nowMs, mutation{}), child.String(), string(st), string(out))
	v, err := s.run(ctx, s.scripts.deliverChild, parent, s.keys.flowKeys(parent, ""), args...)
	if err != nil && !applied(err) {
		return fmt.Errorf("taskflow: deliver child %s to %s: %w", child, parent, err)
	}
	if arr, ok := v.([]any); ok && len(arr) > 1 && arr[1] == "resumed" {
		// The join was met: the parent, ready again, goes on its lane if
		// it has keys (what fails is left to an engine's tick).
		if f, derr := decodeFlowReply(parent, arr, true); derr == nil {
			s.gateQueue(ctx, f, false)
		}
	}
	return nil
}

// closeChildren applies each child's parent-close policy to the
// children of parentID that have not ended, and drops the parent's relay
// entry (true when this call dropped it). Each step can be repeated: a
// cancel of an ended child is refused and ignored.
func (s *RedisStore) closeChildren(ctx context.Context, parentID uuid.UUID) (bool, error) {
	kids, res := s.keys.kids(parentID), s.keys.kidResults(parentID)
	audit := mutation{audit: &auditNote{actor: "taskflow", reason: "parent " + parentID.String() + " ended"}}
	payload, _ := audit.auditPayload()
	for from := int64(0); ; from += 200 {
		ids, err := s.client.ZRange(ctx, kids, from, from+199).Result()
		if err != nil {
			return false, err
		}
		if len(ids) == 0 {
			break
		}
		ended, err := s.client.HMGet(ctx, res, ids...).Result()
		if err != nil {
			return false, err
		}
		var open []uuid.UUID
		for i, raw := range ids {
			id, perr := uuid.Parse(raw)
			if perr == nil && ended[i] == nil {
				open = append(open, id)
			}
		}
		pipe := s.client.Pipeline()
		cmds := make([]*redis.SliceCmd, len(open))
		for i, id := range open {
			cmds[i] = pipe.HMGet(ctx, s.keys.flow(id), "pclose", "status", "parent")
		}
		if len(open) > 0 {
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
				return false, err
			}
		}
		for i, id := range open {
			v := cmds[i].Val()
			if len(v) < 3 || v[1] == nil || v[2] != parentID.String() {
				continue // gone, or not this parent's
			}
			if FlowStatus(fmt.Sprint(v[1])).IsTerminal() {
				continue
			}
			var err error
			switch ParentClosePolicy(fmt.Sprint(v[0])) {
			case ParentCloseAbandon:
				continue
			case ParentCloseRequestCancel:
				_, err = s.requestCancel(ctx, id, audit)
			default:
				// transition relays the child's own end: its outcome
				// to this parent, its children's close.
				_, err = s.transition(ctx, transitionReq{id: id, to: StatusCancelled, kind: EventCancelled, payload: payload, mut: audit})
			}
			if err != nil && !errors.Is(err, ErrAlreadyTerminal) && !errors.Is(err, ErrNotFound) {
				return false, fmt.Errorf("taskflow: close child %s of %s: %w", id, parentID, err)
			}
		}
	}
	return s.relayDone(ctx, parentID, 'c')
}

// relayDue drives the relay entries of every shard that are due at
// nowMs (their call died, or failed), at most batch per shard, and
// returns how many it dropped once done (an entry another engine
// finished first is not counted). Its pipeline also records the tick's
// time (keyspace.lastTick: Explain tells whether engines run), and what
// also adds to it (the tick's first read of schedules).
func (s *RedisStore) relayDue(ctx context.Context, nowMs string, batch int, also func(redis.Pipeliner)) (int, error) {
	pipe := s.client.Pipeline()
	pipe.Set(ctx, s.keys.lastTick(), nowMs, 0)
	also(pipe)
	cmds := make([]*redis.StringSliceCmd, s.keys.shards)
	for shard := range cmds {
		cmds[shard] = pipe.ZRangeByScore(ctx, s.keys.relay(shard), &redis.ZRangeBy{Min: "-inf", Max: nowMs, Count: int64(batch)})
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, err
	}
	n := 0
	var first error
	for _, cmd := range cmds {
		for _, m := range cmd.Val() {
			kind, rest, _ := strings.Cut(m, " ")
			id, err := uuid.Parse(rest)
			if err != nil {
				continue // not ours: Verify reports it
			}
			var done bool
			switch kind {
			case "d":
				done, err = s.deliverOutcome(ctx, id, nil)
			case "c":
				done, err = s.closeChildren(ctx, id)
			case "g":
				done, err = s.driveQueued(ctx, id, nil)
			default:
				continue
			}
			if err != nil {
				if first == nil {
					first = err
				}
				continue
			}
			if done {
				n++
			}
		}
	}
	return n, first
}

// listChildren is ListChildren.
func (s *RedisStore) listChildren(ctx context.Context, parentID uuid.UUID, opts []ListOption) ([]Child, string, error) {
	cfg := listSettings(opts)
	from := int64(0)
	if cfg.cursor != "" {
		n, err := strconv.ParseInt(cfg.cursor, 10, 64)
		if err != nil || n < 0 {
			return nil, "", fmt.Errorf("%w: malformed children cursor %q", ErrInvalidData, cfg.cursor)
		}
		from = n
	}
	ids, err := s.client.ZRangeByScore(ctx, s.keys.kids(parentID), &redis.ZRangeBy{
		Min: "(" + strconv.FormatInt(from, 10), Max: "+inf", Count: int64(cfg.limit) + 1,
	}).Result()
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(ids) > cfg.limit {
		ids = ids[:cfg.limit]
		score, err := s.client.ZScore(ctx, s.keys.kids(parentID), ids[len(ids)-1]).Result()
		if err != nil {
			return nil, "", err
		}
		next = strconv.FormatInt(int64(score), 10)
	}
	if len(ids) == 0 {
		return nil, "", nil
	}
	outs, err := s.client.HMGet(ctx, s.keys.kidResults(parentID), ids...).Result()
	if err != nil {
		return nil, "", err
	}
	page := make([]Child, len(ids))
	pipe := s.client.Pipeline()
	cmds := make([]*redis.SliceCmd, len(ids))
	for i, raw := range ids {
		id, err := uuid.Parse(raw)
		if err != nil {
			return nil, "", fmt.Errorf("%w: parent %s lists a child %q that is no flow id", ErrInvalidData, parentID, raw)
		}
		page[i].ID = id
		if o, ok := outs[i].(string); ok {
			var out childOutcome
			if err := json.Unmarshal([]byte(o), &out); err != nil {
				return nil, "", fmt.Errorf("%w: the outcome of child %s of %s: %v", ErrInvalidData, id, parentID, err)
			}
			page[i] = Child{ID: id, Key: out.Key, Status: out.Status, Ended: true, State: out.State,
				StateOmitted: out.StateOmitted, Error: out.Error}
			continue
		}
		cmds[i] = pipe.HMGet(ctx, s.keys.flow(id), "ckey", "status")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) && !strings.Contains(err.Error(), "empty pipeline") {
		return nil, "", err
	}
	for i, cmd := range cmds {
		if cmd == nil {
			continue
		}
		v := cmd.Val()
		if len(v) == 2 {
			if k, ok := v[0].(string); ok {
				page[i].Key = k
			}
			if st, ok := v[1].(string); ok {
				page[i].Status = FlowStatus(st)
			}
		}
	}
	return page, next, nil
}
