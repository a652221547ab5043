package taskflow

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/internal/masterwatch"
	"github.com/taskflow-dev/taskflow/observe"
)

// Defaults of a RedisStore's options.
const (
	DefaultPrefix = "taskflow"
	DefaultShards = 16
)

// maxShards is the most shards a flow space is split into (WithShards).
const maxShards = 4096

// RedisStore keeps a flow space in Redis. It is safe for concurrent use by
// any number of goroutines, and any number of processes may open stores on
// the same Redis with the same prefix and shard count.
type RedisStore struct {
	client redis.UniversalClient
	// calls is what scripts are sent on: the client, or the client's
	// AutoPipeliner when it was built with AutoPipelineOptions
	// (autoPipelinerOf).
	calls    scriptCaller
	cluster  bool
	keys     keyspace
	scripts  *scripts
	now      func() time.Time
	eventCap int // limits.EventsPerFlow
	maxState int // limits.StateBytes
	// eventCap, maxState and limits.EventBytes as the script arguments of
	// every call, boxed once (an int above 255 in an interface is an
	// allocation).
	eventCapArg, maxStateArg, eventBytesArg any
	limits                                  Limits      // WithLimits, defaults filled in
	early                                   earlyConfig // how early events are kept (early.go)

	// idemSpace namespaces the flow ids derived from idempotency keys.
	idemSpace uuid.UUID

	// noRelay leaves a flow's relay to the tick (tests: a call that died
	// before it relayed).
	noRelay bool
	// onAdmit sees each admission the gate makes (tests: the in-flight
	// counts sampled in the admitting script).
	onAdmit     func(gk string, counts []int)
	replicas    int           // WithReplicaAcks
	replTimeout time.Duration // WithReplicaAcks

	// master follows which server a failover client dials (pubsub.go);
	// nil for other clients.
	master *masterwatch.Watch

	// zones caches the time zones of cron schedules (schedules.go).
	zones zoneCache

	loadMu sync.Mutex
	loaded bool
	// laidOut is set once the layout check passed.
	laidOut atomic.Bool
	// obs observes script runs, ticks, claims and bridge messages; nil
	// when none (see WithObserver).
	obs *observe.Observer
}

// StoreOption configures a RedisStore.
type StoreOption func(*storeConfig)

type storeConfig struct {
	prefix string
	shards int
	now    func() time.Time
	limits Limits
	early  earlyConfig
	obs    *observe.Observer

	replicas    int
	replTimeout time.Duration

	evalOnly bool // withEvalOnly
}

// withEvalOnly makes the store call its scripts with EVALSHA even where
// the server has Redis Functions (scripts.go), so that the tests run a
// real Redis both ways.
func withEvalOnly() StoreOption {
	return func(c *storeConfig) { c.evalOnly = true }
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
// digits modulo the count (RedisStore.ShardOf). More shards spread a
// Redis Cluster's load over more slots; fewer
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

// NewRedisStore returns a store on client. The client may be a
// *redis.Client, a *redis.ClusterClient, a failover client or a ring of
// one; the store does not close it.
//
// A *redis.Client or *redis.ClusterClient built with AutoPipelineOptions
// (go-redis's automatic pipelining, experimental there) has the store
// send its scripts through the client's AutoPipeliner: the scripts that
// many goroutines of one process call at once go to Redis in one round
// trip, which spends less of Redis's CPU per call than a round trip each
// (2-9% per job in the bench's jobs suite), but one batch is in flight at
// a time, which may cost throughput (see the README); a lone call is
// sent at once. Every guarantee holds the same (TestAutoPipelinedClient,
// TestLostReplyAppliesOnce). Reads and subscriptions use the client as
// before. An invalid AutoPipelineOptions is an ErrInvalidData.
func NewRedisStore(client redis.UniversalClient, opts ...StoreOption) (*RedisStore, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil redis client", ErrInvalidData)
	}
	cfg := storeConfig{
		prefix: DefaultPrefix,
		shards: DefaultShards,
		now:    time.Now,
		early:  defaultEarlyConfig(),
	}
	for _, o := range opts {
		o(&cfg)
	}
	if err := validatePrefix(cfg.prefix); err != nil {
		return nil, err
	}
	if cfg.shards < 1 || cfg.shards > maxShards {
		return nil, fmt.Errorf("%w: shard count %d is outside 1..%d", ErrInvalidData, cfg.shards, maxShards)
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
	sc.evalOnly = cfg.evalOnly
	s := &RedisStore{
		client:      client,
		cluster:     cluster,
		keys:        newKeyspace(cfg.prefix, cfg.shards),
		idemSpace:   flowSpaceNamespace(cfg.prefix),
		scripts:     sc,
		now:         cfg.now,
		eventCap:    limits.EventsPerFlow,
		maxState:    limits.StateBytes,
		limits:      limits,
		early:       cfg.early,
		obs:         cfg.obs,
		replicas:    cfg.replicas,
		replTimeout: cfg.replTimeout,
	}
	s.eventCapArg, s.maxStateArg, s.eventBytesArg = s.eventCap, s.maxState, s.limits.EventBytes
	s.master = masterwatch.New(client)
	if s.calls, err = autoPipelinerOf(client); err != nil {
		return nil, err
	}
	return s, nil
}

// scriptCaller sends scripts: a client, or an AutoPipeliner.
type scriptCaller interface {
	redis.Scripter
	processor
}

// autoPipelinerOf returns what the store sends its scripts on: the
// client's AutoPipeliner (go-redis's, its blocking face) when the client
// was built with AutoPipelineOptions (Options, ClusterOptions or
// FailoverOptions), else the client itself. Concurrent calls then share
// round trips: a batch is written and read as one pipeline.
func autoPipelinerOf(client redis.UniversalClient) (scriptCaller, error) {
	var ap *redis.AutoPipeliner
	var err error
	switch c := client.(type) {
	case *redis.Client:
		if c.Options().AutoPipelineOptions == nil {
			return client, nil
		}
		ap, err = c.AutoPipeline()
	case *redis.ClusterClient:
		if c.Options().AutoPipelineOptions == nil {
			return client, nil
		}
		ap, err = c.AutoPipeline()
	default:
		return client, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: the client's AutoPipelineOptions: %w", ErrInvalidData, err)
	}
	return ap, nil
}

// Client returns the Redis client the store uses.
func (s *RedisStore) Client() redis.UniversalClient { return s.client }

// Prefix returns the key prefix.
func (s *RedisStore) Prefix() string { return s.keys.prefix }

// Shards returns the shard count.
func (s *RedisStore) Shards() int { return s.keys.shards }

// Now returns the time on the store's clock: the clock WithClock set,
// time.Now by default. Every time the store records is read from it.
func (s *RedisStore) Now() time.Time { return s.now() }

// clock returns the time on the store's clock to the millisecond, and
// its unix milliseconds as the scripts take them.
func (s *RedisStore) clock() (time.Time, string) {
	t := s.now().UTC().Truncate(time.Millisecond)
	return t, strconv.FormatInt(t.UnixMilli(), 10)
}

// clockMs is the time on the store's clock in unix milliseconds, as
// clock's text says it.
func (s *RedisStore) clockMs() int64 { return s.now().UnixMilli() }

// headLen is the length of the common ARGV head of mutation scripts
// (head).
const headLen = 9

// head returns the common ARGV head of mutation scripts, with room for
// as many of the script's own arguments after it.
func (s *RedisStore) head(id uuid.UUID, nowMs string, mut mutation) []any {
	return s.appendHead(make([]any, 0, 2*headLen), id.String(), nowMs, mut)
}

// appendHead appends the common ARGV head of a mutation of the flow whose
// id's text is ids to args. now is the time in unix milliseconds:
// clock's text, or clockMs's number, which costs one allocation less to
// box (the script reads the same digits).
func (s *RedisStore) appendHead(args []any, ids string, now any, mut mutation) []any {
	exp, token := "", ""
	if mut.expected != nil {
		exp = strconv.FormatInt(*mut.expected, 10)
		if mut.epoch != "" {
			exp += ":" + mut.epoch // guards.lua check_revision
		}
	}
	if mut.lease != nil {
		token = mut.lease.Token
	}
	var reply any = "full" // boxed from a constant: no allocation
	if mut.lean {
		reply = "lean"
	}
	call := mut.call
	if !mut.callSet {
		call = newCallID()
	}
	// lua/include/context.lua names them.
	maxState := s.maxStateArg
	if mut.slack != 0 {
		maxState = s.maxState + mut.slack
	}
	return append(args, ids, now, call, exp, s.eventCapArg, maxState, token, reply, s.eventBytesArg)
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

// LoadScripts loads the scripts (on every master of a cluster): the
// library of Redis Functions where the server has them (FUNCTION LOAD),
// or every script into the script cache. Calling it when a worker starts
// saves the first call its load; it is never required: a library or
// script the server lost (restart, failover, FUNCTION FLUSH, SCRIPT
// FLUSH) is sent again. It writes no key: the first create records the
// flow space's layout.
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

// ShardOf returns the shard the flow with this id lives in: the id's
// last 8 hex digits as a number, modulo the shard count. Every key of the
// flow starts with "<prefix>:{<shard>}" (see the README's key table).
func (s *RedisStore) ShardOf(id uuid.UUID) int { return s.keys.shardOf(id) }

// Defaults and bounds of early events and of the resume-id memories
// (see WithEarlyEvents and WithResumeIDMemory).
const (
	// defaultEarlyEventRetention is how long an event nobody waits for is
	// kept.
	defaultEarlyEventRetention = 24 * time.Hour
	// defaultEarlyEventCap is how many events are kept per topic and
	// correlation id, and per flow id; past it the oldest is dropped.
	defaultEarlyEventCap = 100
	// maxEarlyEventCap bounds WithEarlyEvents's cap: taking an event may
	// read a pair's whole list in one script.
	maxEarlyEventCap = 10000
	// defaultResumeIDMemory is how long a resume request's id is
	// remembered (WithResumeIDMemory): by PublishResume, so that the same
	// request published again adds nothing, and, once its event resumed
	// a flow, by early events (on the pair's shard by correlation, on the
	// flow's shard with the flow id), so that the event resumes no later
	// wait and is not kept again.
	defaultResumeIDMemory = 24 * time.Hour
	// defaultResumeIDCap is how many ids each of those memories keeps
	// (one for PublishResume, one per shard for early events); past it
	// the oldest is forgotten first. A UUID id costs about 136 bytes,
	// a flow id with a UUID event id (a used event on the flow's shard)
	// about 168 (MEMORY USAGE of a sorted set of 100,000, Redis 7.0), so
	// a full memory about 14 to 17 MB (per shard for early events').
	defaultResumeIDCap = 100000
)

type earlyConfig struct {
	retention time.Duration
	cap       int
	// remember and rememberCap bound the memories of request ids and
	// used events (WithResumeIDMemory).
	remember    time.Duration
	rememberCap int
}

func defaultEarlyConfig() earlyConfig {
	return earlyConfig{retention: defaultEarlyEventRetention, cap: defaultEarlyEventCap,
		remember: defaultResumeIDMemory, rememberCap: defaultResumeIDCap}
}

func (c earlyConfig) on() bool { return c.retention > 0 }

func (c earlyConfig) validate() error {
	if c.retention < 0 {
		return fmt.Errorf("%w: early event retention %s is negative", ErrInvalidData, c.retention)
	}
	if c.on() && (c.cap < 1 || c.cap > maxEarlyEventCap) {
		return fmt.Errorf("%w: early event cap %d is outside 1..%d", ErrInvalidData, c.cap, maxEarlyEventCap)
	}
	if c.on() && c.retention < time.Millisecond {
		return fmt.Errorf("%w: early event retention %s is under a millisecond", ErrInvalidData, c.retention)
	}
	if c.remember < time.Second || c.rememberCap < 1 {
		return fmt.Errorf("%w: resume id memory %s with cap %d: want at least a second and 1", ErrInvalidData, c.remember, c.rememberCap)
	}
	return nil
}

// WithEarlyEvents sets how early events are kept: an external event
// that matches no waiting flow is kept for retention (default 24 h), at
// most maxPerCorrelation events per topic and correlation id and per flow
// id (default 100, at least 1, at most 10,000: taking an event may read
// a pair's whole list in one script; past it the oldest is dropped), and a
// flow that starts waiting for it takes it in SetWaiting. A retention of
// 0 turns early events off: an event nobody waits for is dropped, and
// ResumeByCorrelation resumes every waiting flow (see there).
//
// Every process of a flow space should use the same setting. Each kept
// event costs Redis memory: see the README (about 200 bytes plus its
// payload).
func WithEarlyEvents(retention time.Duration, maxPerCorrelation int) StoreOption {
	return func(c *storeConfig) {
		c.early.retention, c.early.cap = retention, maxPerCorrelation
	}
}

// WithResumeIDMemory sets how long (default 24 h, at least a second) and
// how many (default 100,000, at least 1) resume request ids are
// remembered so that a request that comes again applies at most once:
// PublishResume remembers the ids it published (one sorted set), and the
// store the events that resumed a flow (one sorted set per shard:
// by correlation on the pair's shard, and, whatever its origin, the flow
// id with the event id on the flow's shard), each trimmed to the cap,
// oldest first, and expiring with its newest id. With early events off
// (WithEarlyEvents(0, 0)) only PublishResume's memory and the flow's
// ring of bridge calls remain. A request repeated after its id was forgotten is
// still recognised by a flow it resumed while the flow remembers it (its
// newest 16 events) but may otherwise resume a later wait: keep the
// memory longer than a publisher may repeat a request. Every process of
// a flow space should use the same setting.
func WithResumeIDMemory(d time.Duration, capacity int) StoreOption {
	return func(c *storeConfig) {
		c.early.remember, c.early.rememberCap = d, capacity
	}
}
