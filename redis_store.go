package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Defaults of a RedisStore's options.
const (
	DefaultPrefix        = "taskflow"
	DefaultShards        = 16
	DefaultEventCap      = 1000
	DefaultMaxStateBytes = 1 << 20
	MaxShards            = 4096
)

// RedisStore keeps a flow space in Redis. It is safe for concurrent use by
// any number of goroutines, and any number of processes may open stores on
// the same Redis with the same prefix and shard count.
type RedisStore struct {
	client   redis.UniversalClient
	cluster  bool
	keys     keyspace
	scripts  *scripts
	now      func() time.Time
	eventCap int
	maxState int
	limits   Limits      // WithLimits, defaults filled in
	early    earlyConfig // the mailbox for early events (mailbox.go)

	// idemSpace namespaces the flow ids derived from idempotency keys.
	idemSpace uuid.UUID

	replicas    int           // WithReplicaAcks
	replTimeout time.Duration // WithReplicaAcks

	loadMu sync.Mutex
	loaded bool
	// laidOut is set once the layout check passed.
	laidOut atomic.Bool
	// obs observes script runs, ticks, claims and bridge messages; nil
	// when none (see WithObserver).
	obs *Observer
}

// StoreOption configures a RedisStore.
type StoreOption func(*storeConfig)

type storeConfig struct {
	prefix   string
	shards   int
	now      func() time.Time
	eventCap int
	maxState int
	limits   Limits
	early    earlyConfig
	obs      *Observer

	replicas    int
	replTimeout time.Duration
}

// WithPrefix sets the first part of every key (default "taskflow"). It
// must be non-empty, at most 128 bytes, and hold no braces, spaces or
// control characters; NewRedisStore refuses anything else.
func WithPrefix(prefix string) StoreOption {
	return func(c *storeConfig) { c.prefix = prefix }
}

// WithShards sets how many shards the flow space's indexes are split into
// (default 16, from 1 to 4096). Every process sharing a flow space must
// use the same count: a flow's keys are found from its id's last 8 hex
// digits modulo the count (RedisStore.ShardOf). More shards spread a Redis Cluster's load over more slots; fewer
// make lists and ticks cheaper (they visit every shard).
func WithShards(n int) StoreOption {
	return func(c *storeConfig) { c.shards = n }
}

// WithClock sets where the store reads the current time (default
// time.Now). Scripts never read the server's clock: the time is passed in,
// so tests and WaitEngine.TickAt control it.
func WithClock(now func() time.Time) StoreOption {
	return func(c *storeConfig) { c.now = now }
}

// WithEventCap sets how many audit events are kept per flow, newest first
// (default 1000; 0 keeps every event, so a flow's log grows without bound).
func WithEventCap(n int) StoreOption {
	return func(c *storeConfig) { c.eventCap = n }
}

// WithMaxStateBytes caps the size of a flow's state and of any one patch,
// in bytes of compact JSON (default 1 MiB). Larger writes fail with
// ErrInvalidData and change nothing.
func WithMaxStateBytes(n int) StoreOption {
	return func(c *storeConfig) { c.maxState = n }
}

// NewRedisStore returns a store on client. The client may be a
// *redis.Client, a *redis.ClusterClient, a failover client or a ring of
// one; the store does not close it.
func NewRedisStore(client redis.UniversalClient, opts ...StoreOption) (*RedisStore, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil redis client", ErrInvalidData)
	}
	cfg := storeConfig{
		prefix:   DefaultPrefix,
		shards:   DefaultShards,
		now:      time.Now,
		eventCap: DefaultEventCap,
		maxState: DefaultMaxStateBytes,
		early:    defaultEarlyConfig(),
	}
	for _, o := range opts {
		o(&cfg)
	}
	if err := validatePrefix(cfg.prefix); err != nil {
		return nil, err
	}
	if cfg.shards < 1 || cfg.shards > MaxShards {
		return nil, fmt.Errorf("%w: shard count %d is outside 1..%d", ErrInvalidData, cfg.shards, MaxShards)
	}
	if cfg.eventCap < 0 {
		return nil, fmt.Errorf("%w: event cap %d is negative", ErrInvalidData, cfg.eventCap)
	}
	if cfg.maxState < 1 {
		return nil, fmt.Errorf("%w: state size limit %d is not positive", ErrInvalidData, cfg.maxState)
	}
	if cfg.replicas < 0 || (cfg.replicas > 0 && cfg.replTimeout <= 0) {
		return nil, fmt.Errorf("%w: replica acks %d with timeout %s", ErrInvalidData, cfg.replicas, cfg.replTimeout)
	}
	limits, err := cfg.limits.resolve()
	if err != nil {
		return nil, err
	}
	if cfg.now == nil {
		return nil, fmt.Errorf("%w: nil clock", ErrInvalidData)
	}
	if err := cfg.early.validate(); err != nil {
		return nil, err
	}
	_, cluster := client.(*redis.ClusterClient)
	sc, err := loadScripts(cluster)
	if err != nil {
		return nil, err
	}
	return &RedisStore{
		client:      client,
		cluster:     cluster,
		keys:        newKeyspace(cfg.prefix, cfg.shards),
		idemSpace:   flowSpaceNamespace(cfg.prefix),
		scripts:     sc,
		now:         cfg.now,
		eventCap:    cfg.eventCap,
		maxState:    cfg.maxState,
		limits:      limits,
		early:       cfg.early,
		obs:         cfg.obs,
		replicas:    cfg.replicas,
		replTimeout: cfg.replTimeout,
	}, nil
}

// Client returns the Redis client the store uses.
func (s *RedisStore) Client() redis.UniversalClient { return s.client }

// Prefix returns the key prefix.
func (s *RedisStore) Prefix() string { return s.keys.prefix }

// Shards returns the shard count.
func (s *RedisStore) Shards() int { return s.keys.shards }

// now returns the store's clock in milliseconds, and as RFC 3339.
func (s *RedisStore) clock() (time.Time, string, string) {
	t := s.now().UTC().Truncate(time.Millisecond)
	return t, strconv.FormatInt(t.UnixMilli(), 10), t.Format(time.RFC3339Nano)
}

// head returns the common ARGV head of mutation scripts.
func (s *RedisStore) head(id uuid.UUID, nowMs, nowStr string, mut mutation) []any {
	exp, token, reply := "", "", "full"
	if mut.expected != nil {
		exp = strconv.FormatInt(*mut.expected, 10)
	}
	if mut.lease != nil {
		token = mut.lease.Token
	}
	if mut.lean {
		reply = "lean"
	}
	call := mut.call
	if !mut.callSet {
		call = newCallID()
	}
	// lua/include/context.lua names them.
	return []any{id.String(), nowMs, call, exp, s.eventCap, s.maxState + mut.slack, token, reply, s.limits.EventBytes}
}

// checkLayout makes sure the flow space was written with this store's
// shard count and placement of flows, once per store: a store with
// another count or placement would look for flows in the wrong shards. It
// only reads: a flow space with no layout yet (nothing written) passes,
// and is checked again next time. recordLayout is the create's version.
func (s *RedisStore) checkLayout(ctx context.Context) error {
	if s.laidOut.Load() {
		return nil
	}
	got, err := s.client.HGetAll(ctx, s.keys.layout()).Result()
	if err != nil {
		return fmt.Errorf("taskflow: reading the flow space layout: %w", err)
	}
	if len(got) == 0 {
		return nil
	}
	if got["hash"] == "" {
		// Written before the placement was recorded, when flows were
		// placed by FNV-1a: recordLayout marks it so.
		got["hash"] = legacyHash
	}
	return s.matchLayout(got)
}

// recordLayout is checkLayout for a create, the one call that writes to
// an empty flow space: it records
// the shard count and placement when there are none, so the first write
// pins them and a read never does. It costs one round trip, the first
// time only.
func (s *RedisStore) recordLayout(ctx context.Context) error {
	if s.laidOut.Load() {
		return nil
	}
	key := s.keys.layout()
	var setHash, setShards *redis.BoolCmd
	var all *redis.MapStringStringCmd
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		setHash = p.HSetNX(ctx, key, "hash", layoutHash)
		setShards = p.HSetNX(ctx, key, "shards", s.keys.shards)
		all = p.HGetAll(ctx, key)
		return nil
	})
	if err != nil {
		// A refused command (NOPERM, say) aborts the transaction: report
		// its own error rather than EXECABORT.
		for _, c := range []redis.Cmder{setHash, setShards, all} {
			if c.Err() != nil && !strings.HasPrefix(c.Err().Error(), "EXECABORT") {
				err = c.Err()
				break
			}
		}
		return fmt.Errorf("taskflow: recording the flow space layout: %w", err)
	}
	got := all.Val()
	if setHash.Val() && !setShards.Val() {
		// A layout without a placement: written before it was recorded,
		// when flows were placed by FNV-1a. Record that, so that every
		// store refuses the space, not only this one.
		_ = s.client.HSet(ctx, key, "hash", legacyHash).Err()
		got["hash"] = legacyHash
	}
	return s.matchLayout(got)
}

// matchLayout compares a recorded layout with the store's.
func (s *RedisStore) matchLayout(got map[string]string) error {
	if got["shards"] != strconv.Itoa(s.keys.shards) {
		return fmt.Errorf("%w: flow space %q was written with %s shards, this store has %d (use WithShards(%s))",
			ErrLayoutMismatch, s.keys.prefix, got["shards"], s.keys.shards, got["shards"])
	}
	if got["hash"] != layoutHash {
		return fmt.Errorf("%w: flow space %q places flows in shards by %q, this version by %q: it was written by an older taskflow; read it with that version",
			ErrLayoutMismatch, s.keys.prefix, got["hash"], layoutHash)
	}
	s.laidOut.Store(true)
	return nil
}

// LoadScripts loads every script into Redis's script cache (on every
// master of a cluster). Calling it when a worker starts saves the first
// call of each script its EVALSHA miss; it is never required: a script
// the server lost (restart, failover, SCRIPT FLUSH) is sent again. It
// writes no key: the first create records the flow space's layout.
func (s *RedisStore) LoadScripts(ctx context.Context) error {
	if err := s.checkLayout(ctx); err != nil {
		return err
	}
	if err := s.scripts.loadAll(ctx, s.client); err != nil {
		return err
	}
	s.loadMu.Lock()
	s.loaded = true
	s.loadMu.Unlock()
	return nil
}

// ensureLoaded loads every script once, before the first pipeline: a
// pipelined EVALSHA does not fall back to EVAL by itself.
func (s *RedisStore) ensureLoaded(ctx context.Context) error {
	if err := s.checkLayout(ctx); err != nil {
		return err
	}
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	if s.loaded {
		return nil
	}
	if err := s.scripts.loadAll(ctx, s.client); err != nil {
		return err
	}
	s.loaded = true
	return nil
}

// mutation describes one flow-changing script run.
type mutation struct {
	expected *int64
	lease    *Lease
	lean     bool
	audit    *auditNote // WithAudit, audit.go
	call     string     // the call id (WithCallID); a random one when unset
	callSet  bool
	internal bool // the call id is the library's own (bridge messages)
	slack    int  // bytes the state may exceed the cap by (Fail's failure object)
}

// MutationOption adjusts one manager mutation.
type MutationOption func(*mutation)

// IfRevision makes a mutation a compare-and-set: it is refused with a
// *RevisionMismatchError (ErrRevisionMismatch) unless the flow is still at
// revision rev. Without it, mutations apply to whatever revision is
// current, atomically, and never conflict.
func IfRevision(rev int64) MutationOption {
	return func(m *mutation) { m.expected = &rev }
}

// WithoutState makes a mutation return the flow without its state
// (Flow.State is nil): the reply then costs the same whatever the state's
// size. By default a mutation returns the whole flow as persisted.
func WithoutState() MutationOption {
	return func(m *mutation) { m.lean = true }
}

// WithLease makes a mutation part of a worker's lease (see Manager.Claim):
// it is refused with ErrLeaseLost, writing nothing, once the lease expired,
// was released, or moved to another worker, so a worker that stalled
// cannot overwrite its successor's work. The audit event names the lease.
// A nil lease means none.
func WithLease(l *Lease) MutationOption {
	return func(m *mutation) { m.lease = l }
}

func applyMutationOptions(opts []MutationOption) mutation {
	var m mutation
	for _, o := range opts {
		if o != nil {
			o(&m)
		}
	}
	return m
}

// stateArgs renders a state change for apply_state: mode then data.
// merge says whether an object is merged (patch) or replaces (whole state).
func (s *RedisStore) stateArgs(what string, raw json.RawMessage, merge bool) ([]any, error) {
	if raw == nil {
		return []any{"none"}, nil
	}
	if len(raw) > s.maxState {
		return nil, fmt.Errorf("%w: %s is %d bytes, over the limit of %d", ErrInvalidData, what, len(raw), s.maxState)
	}
	if !isObject(raw) {
		return []any{"replace", string(raw)}, nil
	}
	keys, vals, err := splitObject(raw)
	if err != nil {
		return nil, err
	}
	if len(keys) > s.limits.PatchKeys {
		return nil, fmt.Errorf("%w: %s has %d top-level keys, over the limit of %d", ErrInvalidData, what, len(keys), s.limits.PatchKeys)
	}
	mode := "object"
	if merge {
		mode = "merge"
	}
	args := make([]any, 0, 1+2*len(keys))
	args = append(args, mode)
	for i, k := range keys {
		args = append(args, "$"+k, string(vals[i])) // a state key's field
	}
	return args, nil
}

// Get returns the flow with id, or an error wrapping ErrNotFound. It is
// one HGETALL: the record and the state live in one hash.
func (s *RedisStore) Get(ctx context.Context, id uuid.UUID) (*Flow, error) {
	if err := s.checkLayout(ctx); err != nil {
		return nil, err
	}
	m, err := s.client.HGetAll(ctx, s.keys.flow(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("taskflow: get flow %s: %w", id, err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("%w: flow %s", ErrNotFound, id)
	}
	return decodeFlow(id, m, true)
}

// getMany reads flows in one pipeline; missing ones are skipped.
func (s *RedisStore) getMany(ctx context.Context, ids []uuid.UUID) ([]*Flow, error) {
	if len(ids) == 0 {
		return []*Flow{}, nil
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGetAll(ctx, s.keys.flow(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("taskflow: get flows: %w", err)
	}
	out := make([]*Flow, 0, len(ids))
	for i, c := range cmds {
		if len(c.Val()) == 0 {
			continue
		}
		f, err := decodeFlow(ids[i], c.Val(), true)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// pairsToMap turns a script's field/value array into a map.
func pairsToMap(v any) map[string]string {
	fields, _ := v.([]any)
	m := make(map[string]string, len(fields)/2)
	for i := 0; i+1 < len(fields); i += 2 {
		k, _ := fields[i].(string)
		val, _ := fields[i+1].(string)
		m[k] = val
	}
	return m
}

// decodeFlow builds the Flow id from its hash: the record fields, and the
// state as "$<key>" fields (or "state" when it is not an object). A lean
// reply has no state: State stays nil.
func decodeFlow(id uuid.UUID, m map[string]string, withState bool) (*Flow, error) {
	st, err := ParseFlowStatus(m["status"])
	if err != nil {
		return nil, fmt.Errorf("flow %s: %w", id, err)
	}
	f := &Flow{
		ID:              id,
		ControllerID:    m["controller"],
		Goal:            m["goal"],
		OwnerSessionKey: m["owner"],
		RequesterOrigin: m["origin"],
		CurrentStep:     m["step"],
		Status:          st,
		CancelRequested: m["cancel"] == "1",
		TraceParent:     m["tp"],
	}
	f.Revision, _ = strconv.ParseInt(m["rev"], 10, 64)
	f.Attempts, _ = strconv.Atoi(m["att"])
	f.CreatedAt = msTime(m["created"])
	f.UpdatedAt = msTime(m["updated"])
	if w, ok := m["wait"]; ok {
		f.Wait = json.RawMessage(w)
	}
	if !withState {
		return f, nil
	}
	if raw, ok := m["state"]; ok && m["raw"] == "1" {
		f.State = json.RawMessage(raw)
		return f, nil
	}
	var keys []string
	var vals [][]byte
	for k, v := range m {
		if strings.HasPrefix(k, "$") {
			keys = append(keys, k[1:])
			vals = append(vals, []byte(v))
		}
	}
	f.State = joinObject(keys, vals)
	return f, nil
}

func msTime(s string) time.Time {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// create runs create.lua.
func (s *RedisStore) create(ctx context.Context, in CreateManagedInput, mirrored bool) (*Flow, error) {
	return s.createWithID(ctx, uuid.New(), in, mirrored)
}

// createWithID runs create.lua for flow id; a taken id is
// ErrAlreadyExists.
func (s *RedisStore) createWithID(ctx context.Context, id uuid.UUID, in CreateManagedInput, mirrored bool) (*Flow, error) {
	for _, r := range []struct{ name, v string }{
		{"controller_id", in.ControllerID},
		{"goal", in.Goal},
		{"owner_session_key", in.OwnerSessionKey},
	} {
		if strings.TrimSpace(r.v) == "" {
			return nil, fmt.Errorf("%w: %s is required", ErrInvalidData, r.name)
		}
	}
	if err := checkText("controller_id", in.ControllerID, "goal", in.Goal, "owner_session_key", in.OwnerSessionKey,
		"requester_origin", in.RequesterOrigin, "current_step", in.CurrentStep); err != nil {
		return nil, err
	}
	if err := checkLens(lim("controller_id", in.ControllerID, s.limits.LabelBytes), lim("goal", in.Goal, s.limits.TextBytes),
		lim("owner_session_key", in.OwnerSessionKey, s.limits.LabelBytes), lim("requester_origin", in.RequesterOrigin, s.limits.LabelBytes),
		lim("current_step", in.CurrentStep, s.limits.LabelBytes)); err != nil {
		return nil, err
	}
	state, err := toJSON("state", in.State)
	if err != nil {
		return nil, err
	}
	if state == nil {
		state = json.RawMessage(`{}`)
	}
	stateArgs, err := s.stateArgs("state", state, false)
	if err != nil {
		return nil, err
	}
	payload, _ := json.Marshal(map[string]string{
		"controller_id": in.ControllerID,
		"goal":          in.Goal,
		"current_step":  in.CurrentStep,
	})
	kid, fingerprint, err := s.idempotency(in, mirrored, state)
	if err != nil {
		return nil, err
	}
	if in.IdempotencyKey != "" {
		id = kid // the key names the flow
	}
	_, nowMs, nowStr := s.clock()
	mir := "0"
	if mirrored {
		mir = "1"
	}
	args := append(s.head(id, nowMs, nowStr, mutation{}),
		in.ControllerID, in.Goal, in.OwnerSessionKey, in.RequesterOrigin, in.CurrentStep, mir, string(payload), fingerprint,
		s.traceParent(ctx))
	args = append(args, stateArgs...)
	// Only a create can write to an empty flow space: it records the
	// layout; every other mutation needs a flow, hence a recorded layout.
	if err := s.recordLayout(ctx); err != nil {
		return nil, err
	}
	f, _, err := s.runFlowScript(ctx, s.scripts.create, id, s.keys.flowKeys(id, in.OwnerSessionKey), args)
	if errors.Is(err, ErrIdempotencyConflict) {
		return nil, fmt.Errorf("%w: flow %s was created with this key from other input", ErrIdempotencyConflict, id)
	}
	if err != nil {
		return nil, fmt.Errorf("taskflow: create flow: %w", err)
	}
	return f, nil
}

// waitArgs are the index entries of a wait: ARGV 10..12 of transition.lua.
type waitArgs struct {
	json    string
	timerMs string
	corr    string
}

// transitionReq is one run of transition.lua.
type transitionReq struct {
	id      uuid.UUID
	from    FlowStatus // "" = any source the graph allows
	to      FlowStatus
	kind    string
	payload json.RawMessage
	wait    waitArgs
	guard   string
	state   []any
	mut     mutation
	// inbox: a wait on an external event is met at once by a kept event
	// of the flow's inbox (mailbox.go).
	inbox bool
}

// transition runs transition.lua at the store's current time.
func (s *RedisStore) transition(ctx context.Context, r transitionReq) (*Flow, error) {
	if err := r.mut.check(); err != nil {
		return nil, err
	}
	_, nowMs, nowStr := s.clock()
	sc, keys := s.scripts.transition, s.keys.flowKeys(r.id, "")
	if r.inbox {
		sc, keys = s.scripts.transitionEarly, s.keys.withInbox(keys, r.id)
	}
	f, _, err := s.runFlowScript(ctx, sc, r.id, keys, s.transitionArgs(r, nowMs, nowStr), r.meta())
	if err != nil {
		var te *TransitionError
		if errors.As(err, &te) {
			te.To = r.to
		}
		return nil, err
	}
	return f, nil
}

// meta describes the transition to the observer.
func (r transitionReq) meta() opMeta {
	m := opMeta{event: r.kind}
	if r.kind == EventResumed {
		m.waitKind = waitKindOfGuard(r.guard)
	}
	return m
}

func (s *RedisStore) transitionArgs(r transitionReq, nowMs, nowStr string) []any {
	state := r.state
	if state == nil {
		state = []any{"none"}
	}
	args := append(s.head(r.id, nowMs, nowStr, r.mut),
		string(r.to), jsonString(r.kind), string(r.payload),
		r.wait.json, r.wait.timerMs, r.wait.corr, r.guard, string(r.from))
	return append(args, state...)
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
	stateArgs, err := s.stateArgs("patch", patch, true)
	if err != nil {
		return nil, err
	}
	payload := []byte(`{"patch":` + rawOrNull(patch) + `,"next_step":` + stringOrNull(nextStep) + `}`)
	_, nowMs, nowStr := s.clock()
	args := append(s.head(id, nowMs, nowStr, mut), nextStep, string(payload))
	args = append(args, stateArgs...)
	f, _, err := s.runFlowScript(ctx, s.scripts.updateState, id, s.keys.flowKeys(id, ""), args)
	return f, err
}

// requestCancel runs request_cancel.lua.
func (s *RedisStore) requestCancel(ctx context.Context, id uuid.UUID, mut mutation) (*Flow, error) {
	if err := mut.check(); err != nil {
		return nil, err
	}
	_, nowMs, nowStr := s.clock()
	f, _, err := s.runFlowScript(ctx, s.scripts.requestCancel, id, s.keys.flowKeys(id, ""), s.head(id, nowMs, nowStr, mut))
	return f, err
}

func rawOrNull(raw json.RawMessage) string {
	if raw == nil {
		return "null"
	}
	return string(raw)
}

func stringOrNull(s string) string {
	if s == "" {
		return "null"
	}
	return jsonString(s)
}

// UpdateAndAppend writes the whole flow record f if the stored revision is
// still f.Revision, together with one audit event of kind and payload; the
// stored flow gets revision f.Revision+1 and the store's current time as
// UpdatedAt. ID, OwnerSessionKey and CreatedAt cannot change. On a stale
// revision it returns a *RevisionMismatchError (ErrRevisionMismatch) and
// writes nothing. Indexes (status, timers, correlation) follow the record;
// the state machine is not checked: this is the layer below the Manager.
func (s *RedisStore) UpdateAndAppend(ctx context.Context, f *Flow, kind string, payload any) (*Flow, *FlowEvent, error) {
	if f == nil {
		return nil, nil, fmt.Errorf("%w: nil flow", ErrInvalidData)
	}
	if !f.Status.Valid() {
		return nil, nil, fmt.Errorf("%w: unknown flow status %q", ErrInvalidData, f.Status)
	}
	if strings.TrimSpace(kind) == "" {
		return nil, nil, fmt.Errorf("%w: event kind is required", ErrInvalidData)
	}
	if err := checkText("controller_id", f.ControllerID, "goal", f.Goal, "owner_session_key", f.OwnerSessionKey,
		"requester_origin", f.RequesterOrigin, "current_step", f.CurrentStep, "event kind", kind); err != nil {
		return nil, nil, err
	}
	if err := checkLens(lim("event kind", kind, s.limits.LabelBytes), lim("controller_id", f.ControllerID, s.limits.LabelBytes),
		lim("goal", f.Goal, s.limits.TextBytes), lim("requester_origin", f.RequesterOrigin, s.limits.LabelBytes),
		lim("current_step", f.CurrentStep, s.limits.LabelBytes)); err != nil {
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
		if err != nil {
			return nil, nil, err
		}
	}
	cancel := "0"
	if f.CancelRequested {
		cancel = "1"
	}
	_, nowMs, nowStr := s.clock()
	rev := f.Revision
	args := append(s.head(f.ID, nowMs, nowStr, mutation{expected: &rev}),
		string(f.Status), f.ControllerID, f.Goal, f.OwnerSessionKey, f.RequesterOrigin, f.CurrentStep,
		cancel, wait.json, wait.timerMs, wait.corr, jsonString(kind), string(pl))
	args = append(args, stateArgs...)
	nf, arr, err := s.runFlowScript(ctx, s.scripts.writeFlow, f.ID, s.keys.flowKeys(f.ID, ""), args)
	if err != nil {
		return nil, nil, err
	}
	numbered, _ := arr[1].(string)
	ev, err := decodeNumbered(f.ID, numbered)
	if err != nil {
		return nil, nil, err
	}
	return nf, ev, nil
}

// storedEvent is the JSON of one audit entry as kept in Redis, kept
// short because a flow space holds millions: at is unix milliseconds, and
// the id is not stored (the flow's seq is the newest entry's id).
type storedEvent struct {
	Kind     string          `json:"kind"`
	Revision int64           `json:"rev"`
	At       int64           `json:"at"`
	Lease    string          `json:"lease"`
	Payload  json.RawMessage `json:"payload"`
}

func decodeEvent(flowID uuid.UUID, id int64, entry string) (*FlowEvent, error) {
	var se storedEvent
	if err := json.Unmarshal([]byte(entry), &se); err != nil {
		return nil, fmt.Errorf("%w: stored event of flow %s: %v", ErrInvalidData, flowID, err)
	}
	return &FlowEvent{
		ID: strconv.FormatInt(id, 10), FlowID: flowID, Kind: se.Kind, Revision: se.Revision,
		Lease: se.Lease, Payload: se.Payload, At: time.UnixMilli(se.At).UTC(),
	}, nil
}

// decodeNumbered reads "<event id> <entry>".
func decodeNumbered(flowID uuid.UUID, s string) (*FlowEvent, error) {
	idStr, entry, _ := strings.Cut(s, " ")
	id, err := strconv.ParseInt(idStr, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: event of flow %s without an id", ErrInvalidData, flowID)
	}
	return decodeEvent(flowID, id, entry)
}

// ListEvents returns up to limit of a flow's events, newest first. A limit
// of zero or less returns none; an unknown flow has none.
func (s *RedisStore) ListEvents(ctx context.Context, flowID uuid.UUID, limit int) ([]*FlowEvent, error) {
	if limit <= 0 {
		return []*FlowEvent{}, nil
	}
	if err := s.checkLayout(ctx); err != nil {
		return nil, err
	}
	// The newest entry's id is the flow's seq: read both at once.
	var seqCmd *redis.StringCmd
	var listCmd *redis.StringSliceCmd
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		seqCmd = p.HGet(ctx, s.keys.flow(flowID), "seq")
		listCmd = p.LRange(ctx, s.keys.events(flowID), 0, int64(limit)-1)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("taskflow: list events of %s: %w", flowID, err)
	}
	entries := listCmd.Val()
	newest, _ := strconv.ParseInt(seqCmd.Val(), 10, 64)
	out := make([]*FlowEvent, 0, len(entries))
	for i, e := range entries {
		ev, err := decodeEvent(flowID, newest-int64(i), e)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

// InsertStep stores a new step. The flow must exist (ErrNotFound); a step
// with the same flow and run id is ErrDuplicateStep. A zero ID or
// timestamp is filled in; the step is not added to the audit log.
func (s *RedisStore) InsertStep(ctx context.Context, st *FlowStep) error {
	if st == nil {
		return fmt.Errorf("%w: nil step", ErrInvalidData)
	}
	if st.RunID == "" {
		return fmt.Errorf("%w: run_id is required", ErrInvalidData)
	}
	if err := checkText("run_id", st.RunID, "task", st.Task, "child_session_key", st.ChildSessionKey); err != nil {
		return err
	}
	if err := checkLens(lim("run_id", st.RunID, s.limits.LabelBytes), lim("task", st.Task, s.limits.TextBytes),
		lim("child_session_key", st.ChildSessionKey, s.limits.LabelBytes)); err != nil {
		return err
	}
	if !st.Runtime.Valid() {
		return fmt.Errorf("%w: unknown step runtime %q", ErrInvalidData, st.Runtime)
	}
	if !st.Status.Valid() {
		return fmt.Errorf("%w: unknown step status %q", ErrInvalidData, st.Status)
	}
	result, err := toJSON("result", st.Result)
	if err != nil {
		return err
	}
	if st.ID == uuid.Nil {
		st.ID = uuid.New()
	}
	now, _, _ := s.clock()
	if st.CreatedAt.IsZero() {
		st.CreatedAt = now
	}
	if st.UpdatedAt.IsZero() {
		st.UpdatedAt = st.CreatedAt
	}
	keys := []string{s.keys.flow(st.FlowID), s.keys.steps(st.FlowID), s.keys.step(st.FlowID, st.RunID)}
	_, err = s.run(ctx, s.scripts.insertStep, st.FlowID, keys,
		st.ID.String(), st.FlowID.String(), string(st.Runtime), st.RunID, st.Task, string(st.Status),
		st.ChildSessionKey, string(result), st.CreatedAt.UnixMilli(), st.UpdatedAt.UnixMilli(), s.limits.StepsPerFlow)
	if err != nil {
		if errors.Is(err, ErrDuplicateStep) {
			return fmt.Errorf("%w: flow %s already has run_id %q", ErrDuplicateStep, st.FlowID, st.RunID)
		}
		return fmt.Errorf("taskflow: insert step: %w", err)
	}
	return nil
}

// recordStep runs record_step.lua.
func (s *RedisStore) recordStep(ctx context.Context, obs StepObservation, mut mutation) (*FlowStep, error) {
	if err := mut.check(); err != nil {
		return nil, err
	}
	if obs.RunID == "" {
		return nil, fmt.Errorf("%w: run_id is required", ErrInvalidData)
	}
	if err := checkText("run_id", obs.RunID, "task", obs.Task, "child_session_key", obs.ChildSessionKey); err != nil {
		return nil, err
	}
	if err := checkLens(lim("run_id", obs.RunID, s.limits.LabelBytes), lim("task", obs.Task, s.limits.TextBytes),
		lim("child_session_key", obs.ChildSessionKey, s.limits.LabelBytes)); err != nil {
		return nil, err
	}
	if !obs.Status.Valid() {
		return nil, fmt.Errorf("%w: unknown step status %q", ErrInvalidData, obs.Status)
	}
	result, err := toJSON("result", obs.Result)
	if err != nil {
		return nil, err
	}
	if len(result) > s.maxState {
		return nil, fmt.Errorf("%w: result is %d bytes, over the limit of %d", ErrInvalidData, len(result), s.maxState)
	}
	payload, _ := json.Marshal(map[string]string{
		"run_id": obs.RunID, "status": string(obs.Status), "runtime": string(RuntimeMirrored),
	})
	_, nowMs, nowStr := s.clock()
	keys := append(s.keys.flowKeys(obs.FlowID, ""), s.keys.step(obs.FlowID, obs.RunID))
	args := append(s.head(obs.FlowID, nowMs, nowStr, mut),
		obs.RunID, uuid.NewString(), obs.Task, string(obs.Status), obs.ChildSessionKey, string(result),
		string(RuntimeMirrored), string(payload), s.limits.StepsPerFlow)
	v, err := s.run(ctx, s.scripts.recordStep, obs.FlowID, keys, args...)
	if err != nil {
		return nil, fmt.Errorf("taskflow: record step: %w", err)
	}
	return decodeStep(v)
}

func decodeStep(v any) (*FlowStep, error) {
	fields, _ := v.([]any)
	m := make(map[string]string, len(fields)/2)
	for i := 0; i+1 < len(fields); i += 2 {
		k, _ := fields[i].(string)
		val, _ := fields[i+1].(string)
		m[k] = val
	}
	id, err := uuid.Parse(m["id"])
	if err != nil {
		return nil, fmt.Errorf("%w: stored step has a bad id %q", ErrInvalidData, m["id"])
	}
	flowID, _ := uuid.Parse(m["flow_id"])
	st := &FlowStep{
		ID:              id,
		FlowID:          flowID,
		Runtime:         StepRuntime(m["runtime"]),
		ChildSessionKey: m["child_session_key"],
		RunID:           m["run_id"],
		Task:            m["task"],
		Status:          StepStatus(m["status"]),
		CreatedAt:       msTime(m["created"]),
		UpdatedAt:       msTime(m["updated"]),
	}
	if r, ok := m["result_json"]; ok {
		st.Result = json.RawMessage(r)
	}
	return st, nil
}

// ListSteps returns a flow's steps, oldest first. An unknown flow has none.
func (s *RedisStore) ListSteps(ctx context.Context, flowID uuid.UUID) ([]*FlowStep, error) {
	if err := s.checkLayout(ctx); err != nil {
		return nil, err
	}
	runIDs, err := s.client.ZRange(ctx, s.keys.steps(flowID), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("taskflow: list steps of %s: %w", flowID, err)
	}
	if len(runIDs) == 0 {
		return []*FlowStep{}, nil
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(runIDs))
	for i, r := range runIDs {
		cmds[i] = pipe.HGetAll(ctx, s.keys.step(flowID, r))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("taskflow: list steps of %s: %w", flowID, err)
	}
	out := make([]*FlowStep, 0, len(runIDs))
	for _, c := range cmds {
		m := c.Val()
		if len(m) == 0 {
			continue
		}
		fields := make([]any, 0, 2*len(m))
		for k, v := range m {
			fields = append(fields, k, v)
		}
		st, err := decodeStep(fields)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// PruneTerminalFlows deletes terminal flows whose last update is older than
// olderThan, with their state, steps, events and index entries, and
// returns how many it deleted. It works shard by shard in batches of 100
// flows, and never touches a flow that is not terminal.
func (s *RedisStore) PruneTerminalFlows(ctx context.Context, olderThan time.Duration) (int, error) {
	if olderThan < 0 {
		return 0, fmt.Errorf("%w: negative retention %s", ErrInvalidData, olderThan)
	}
	now, _, _ := s.clock()
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
		keys := s.keys.flowKeys(f.ID, f.OwnerSessionKey)
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
