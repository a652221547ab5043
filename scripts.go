package taskflow

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/internal/luascript"
)

// lua/*.lua are the scripts, one per call; lua/include/*.lua the helpers
// they include ("--@include <name>", or "prelude": the tables generated
// from Go below). internal/luascript assembles them and checks the rules
// their text follows.
//
//go:embed lua/*.lua lua/include/*.lua
var luaFiles embed.FS

// script is one loaded script: the name of its file, whether it writes
// (a write waits for replicas under WithReplicaAcks) and whether the
// observer hears of its runs (the writes of a flow: the early events' own
// bookkeeping, early_*, and publish_resume are not operations on a flow).
type script struct {
	*redis.Script
	name     string
	fn       string // its function in the library: tf_<version>_<name>
	fnBoxed  any    // fn as an interface value, made once (fcall)
	writes   bool
	observed bool
}

// scripts holds every compiled script of a store, by file name.
type scripts struct {
	create, transition, updateState, requestCancel, writeFlow  *script
	recordStep, insertStep, pruneFlow                          *script
	verifyFlow, reindexFlow, deleteOrphans                     *script
	claim, extendLease, releaseLease, expireLease              *script
	pageAfter, tickCancel, verifyEntry, indexStep              *script
	retry                                                      *script
	setAttributes, findPage                                    *script // find.go
	insertFlow, appendEventAt, getStep, findStep, updateStep   *script // import_store.go
	deliverEvent, earlyKeep, earlyTake, earlySettle            *script
	publishResume                                              *script
	spawnChildren, deliverChild                                *script // children.go
	schedCreate, schedWrite, schedDelete                       *script // schedules.go
	schedAdvance, schedRecord, schedFail, schedReconcile       *script
	gateEnqueue, gateAdmit, gateRelease, gateExtend, gateLimit *script // gate.go
	claimTake, setGate, relayDrop                              *script
	// transitionEarly is transition for a wait on an external event: it
	// includes the early events' helpers, which the other transitions do not
	// pay for.
	transitionEarly *script
	all             []*script

	// lib is every script as one Redis Functions library; mode says
	// whether the store calls it (FCALL) or the scripts (EVALSHA),
	// decided once (functions). evalOnly forces EVALSHA (withEvalOnly).
	lib      *luascript.Library
	evalOnly bool
	modeMu   sync.Mutex
	mode     atomic.Int32
}

// The ways a store calls its scripts: undecided until the first call or
// load, then for good.
const (
	modeUndecided int32 = iota
	modeFunctions       // FCALL and FCALL_RO of the library
	modeEval            // EVALSHA (EVAL after a NOSCRIPT)
)

// scriptFile is one script of the table: its file (lua/<file>.lua),
// whether it writes, and where the store keeps it.
type scriptFile struct {
	file   string
	writes bool
	dst    **script
}

// files lists every script.
func (s *scripts) files() []scriptFile {
	return []scriptFile{
		{"create", true, &s.create},
		{"transition", true, &s.transition},
		{"transition_early", true, &s.transitionEarly},
		{"update_state", true, &s.updateState},
		{"request_cancel", true, &s.requestCancel},
		{"write_flow", true, &s.writeFlow},
		{"record_step", true, &s.recordStep},
		{"insert_step", true, &s.insertStep},
		{"prune_flow", true, &s.pruneFlow},
		{"verify_flow", false, &s.verifyFlow},
		{"reindex_flow", true, &s.reindexFlow},
		{"delete_orphans", true, &s.deleteOrphans},
		{"claim", true, &s.claim},
		{"extend_lease", true, &s.extendLease},
		{"release_lease", true, &s.releaseLease},
		{"expire_lease", true, &s.expireLease},
		{"page_after", false, &s.pageAfter},
		{"tick_cancel", true, &s.tickCancel},
		{"verify_entry", false, &s.verifyEntry},
		{"index_step", true, &s.indexStep},
		{"retry", true, &s.retry},
		{"deliver_event", true, &s.deliverEvent},
		{"early_keep", true, &s.earlyKeep},
		{"early_take", true, &s.earlyTake},
		{"early_settle", true, &s.earlySettle},
		{"publish_resume", true, &s.publishResume},
		{"insert_flow", true, &s.insertFlow},
		{"append_event_at", true, &s.appendEventAt},
		{"get_step", false, &s.getStep},
		{"find_step", false, &s.findStep},
		{"update_step", true, &s.updateStep},
		{"spawn_children", true, &s.spawnChildren},
		{"deliver_child", true, &s.deliverChild},
		{"sched_create", true, &s.schedCreate},
		{"sched_write", true, &s.schedWrite},
		{"sched_delete", true, &s.schedDelete},
		{"sched_advance", true, &s.schedAdvance},
		{"sched_record", true, &s.schedRecord},
		{"sched_fail", true, &s.schedFail},
		{"sched_reconcile", true, &s.schedReconcile},
		{"set_attributes", true, &s.setAttributes},
		{"find_page", false, &s.findPage},
		{"gate_enqueue", true, &s.gateEnqueue},
		{"gate_admit", true, &s.gateAdmit},
		{"gate_release", true, &s.gateRelease},
		{"gate_extend", true, &s.gateExtend},
		{"gate_limit", true, &s.gateLimit},
		{"claim_take", true, &s.claimTake},
		{"set_gate", true, &s.setGate},
		{"relay_drop", true, &s.relayDrop},
	}
}

// loadScripts assembles and compiles every script (cluster: sharded
// pub/sub).
func loadScripts(cluster bool) (*scripts, error) {
	s := &scripts{}
	l, err := newLuaLoader(cluster)
	if err != nil {
		return nil, err
	}
	var libScripts []luascript.LibraryScript
	for _, x := range s.files() {
		libScripts = append(libScripts, luascript.LibraryScript{Name: x.file, ReadOnly: !x.writes})
	}
	if s.lib, err = l.Library(libScripts); err != nil {
		return nil, fmt.Errorf("taskflow: lua library: %w", err)
	}
	for _, x := range s.files() {
		src, err := l.Assemble(x.file)
		if err != nil {
			return nil, fmt.Errorf("taskflow: lua script %s: %w", x.file, err)
		}
		fn := s.lib.Function(x.file)
		*x.dst = &script{Script: redis.NewScript(src), name: x.file, fn: fn, fnBoxed: fn, writes: x.writes,
			observed: x.writes && !strings.HasPrefix(x.file, "early_") && !strings.HasPrefix(x.file, "sched_") && x.file != "publish_resume"}
		s.all = append(s.all, *x.dst)
	}
	return s, nil
}

// newLuaLoader returns the loader of lua/ with the prelude of Go's tables.
func newLuaLoader(cluster bool) (*luascript.Loader, error) {
	fsys, err := fs.Sub(luaFiles, "lua")
	if err != nil {
		return nil, fmt.Errorf("taskflow: lua scripts: %w", err)
	}
	return luascript.NewLoader(fsys, luaPrelude(cluster)), nil
}

// refusal is one way a script refuses a call: its code (the first word of
// the error reply) and the typed error the caller gets, built from the
// flow id and the reply's details.
type refusal struct {
	code string
	err  func(id uuid.UUID, detail string) error
}

// refusals is the one table of the scripts' refusal codes: the prelude
// gives the scripts ERR.<code>, and scriptError maps a reply back.
var refusals = []refusal{
	{"NOTFOUND", func(id uuid.UUID, _ string) error { return fmt.Errorf("%w: flow %s", ErrNotFound, id) }},
	{"NOMATCH", func(uuid.UUID, string) error { return errNoMatch }},
	{"STALE", func(uuid.UUID, string) error { return errStaleEntry }},
	{"BADWAIT", func(id uuid.UUID, _ string) error {
		return fmt.Errorf("%w: flow %s has a timer entry but its wait is not a timer", ErrInvalidData, id)
	}},
	{"REVISION", func(id uuid.UUID, d string) error {
		// "<expected>[:<epoch>] <actual>"
		want, actual, _ := strings.Cut(d, " ")
		rev, epoch, _ := strings.Cut(want, ":")
		exp, _ := strconv.ParseInt(rev, 10, 64)
		act, _ := strconv.ParseInt(strings.TrimSpace(actual), 10, 64)
		return &RevisionMismatchError{FlowID: id, Expected: exp, Actual: act, ExpectedEpoch: epoch}
	}},
	{"TERMINAL", func(id uuid.UUID, d string) error {
		return &TransitionError{FlowID: id, From: FlowStatus(d), Err: ErrAlreadyTerminal}
	}},
	{"CANCELPENDING", func(id uuid.UUID, d string) error {
		return &TransitionError{FlowID: id, From: FlowStatus(d), Err: ErrCancelPending}
	}},
	{"ILLEGAL", func(id uuid.UUID, d string) error {
		return &TransitionError{FlowID: id, From: FlowStatus(d), Err: ErrIllegalTransition}
	}},
	{"TOOLARGE", func(id uuid.UUID, d string) error {
		return fmt.Errorf("%w: %w: the state of flow %s would be %s bytes, over the limit", ErrInvalidData, ErrStateTooLarge, id, d)
	}},
	{"TOOMANYSTEPS", func(id uuid.UUID, d string) error {
		return fmt.Errorf("%w: flow %s holds %s steps, the most a flow may hold (Limits.StepsPerFlow)", ErrInvalidData, id, d)
	}},
	{"DUPSTEP", func(id uuid.UUID, _ string) error { return fmt.Errorf("%w: flow %s", ErrDuplicateStep, id) }},
	{"NOSTEP", func(uuid.UUID, string) error { return errNoStep }},
	{"IMMUTABLE", func(id uuid.UUID, d string) error {
		return fmt.Errorf("%w: %s of flow %s cannot change", ErrInvalidData, d, id)
	}},
	{"LEASELOST", func(id uuid.UUID, _ string) error { return fmt.Errorf("%w: flow %s", ErrLeaseLost, id) }},
	{"ATTEMPTS", func(_ uuid.UUID, d string) error {
		var n int
		_, _ = fmt.Sscanf(d, "%d", &n)
		return &attemptsMoved{actual: n}
	}},
	{"IDEMCONFLICT", func(uuid.UUID, string) error { return ErrIdempotencyConflict }},
	{"TOODEEP", func(id uuid.UUID, d string) error {
		return fmt.Errorf("%w: a child of flow %s would be at depth %s, deeper than Limits.ChildDepth", ErrInvalidData, id, d)
	}},
	{"TOOMANYCHILDREN", func(id uuid.UUID, d string) error {
		return fmt.Errorf("%w: flow %s has %s children, too many to start these (Limits.ChildrenPerFlow)", ErrInvalidData, id, d)
	}},
	{"TOOMANYATTRS", func(id uuid.UUID, d string) error {
		return fmt.Errorf("%w: flow %s would hold %s search attributes, at most %d", ErrInvalidData, id, d, maxAttributes)
	}},
	{"EXISTS", func(id uuid.UUID, _ string) error { return fmt.Errorf("%w: flow %s", ErrAlreadyExists, id) }},
	{"COUNTLIMIT", func(id uuid.UUID, d string) error {
		var rev, seq int64
		_, _ = fmt.Sscanf(d, "%d %d", &rev, &seq)
		return fmt.Errorf("%w: %w: flow %s is at revision %d, event id %d: a change would pass %d, the most a flow counts to", ErrInvalidData, ErrRevisionLimit, id, rev, seq, maxRevision)
	}},
}

// refusalByCode indexes refusals.
var refusalByCode = func() map[string]refusal {
	m := make(map[string]refusal, len(refusals))
	for _, r := range refusals {
		m[r.code] = r
	}
	return m
}()

// luaPrelude is what Go tells the scripts ("--@include prelude"):
// MAX_COUNT (maxRevision), PUBLISH ('SPUBLISH' on a cluster), ERR (the
// refusal codes), S_<STATUS> (the status names), STATUS (per status:
// index, the position of its index key in the flow key set; terminal;
// runnable; waits), RECORD (recordFields) and ALLOWED[to][from] (the
// transition table).
func luaPrelude(cluster bool) luascript.Prelude {
	p := luascript.Prelude{Cluster: cluster, MaxCount: maxRevision, Record: recordFields[:]}
	for _, r := range refusals {
		p.Codes = append(p.Codes, r.code)
	}
	for i, st := range allStatuses {
		im := statusImplies[st]
		s := luascript.Status{Name: string(st), Index: firstStatusKey + i,
			Terminal: st.IsTerminal(), Runnable: im.runnable, Waits: im.waits}
		for _, from := range sourcesOf(st) {
			s.From = append(s.From, string(from))
		}
		p.Statuses = append(p.Statuses, s)
	}
	return p
}

// recordFields are a flow hash's record fields (the rest are the state's
// and the scripts' own): the prelude's RECORD, the order of a lean reply.
var recordFields = [...]string{
	"controller", "goal", "owner", "origin",
	"step", "status", "cancel", "rev", "created",
	"updated", "wait", "corr", "raw", "size",
	"seq", "att", "tp", "ep", "parent", "ckey", "kids", "gk",
}

// firstStatusKey is the position (1-based, as in KEYS) of the first
// status index in a flow's key set (keys.flowKeys): the indexes follow
// in allStatuses order.
const firstStatusKey = 4

// scriptError maps a script's refusal to its typed error (see refusals);
// any other error is returned as it is.
func scriptError(err error, id uuid.UUID) error {
	if err == nil {
		return nil
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return err
	}
	// Redis 7 and miniredis prefix error_reply texts with "ERR ".
	code, detail, _ := strings.Cut(strings.TrimPrefix(rerr.Error(), "ERR "), " ")
	if r, ok := refusalByCode[code]; ok {
		return r.err(id, detail)
	}
	return err
}

// errNoMatch is a guard that did not hold: the caller turns it into a no-op.
var errNoMatch = errors.New("taskflow: no match")

// errNoStep is update_step.lua's refusal of a step it does not hold; the
// caller names the step (ErrNotFound).
var errNoStep = errors.New("taskflow: no such step")

// isNoScript reports a NOSCRIPT reply (the server lost its script cache).
func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// isNoFunction reports FCALL's reply when the server does not hold the
// function (a new master, FUNCTION FLUSH or DELETE): like NOSCRIPT, the
// call did not run.
func isNoFunction(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "function not found")
}

// functionsRefused reports FUNCTION LOAD's reply from a server that has
// no Functions for this client: before Redis 7.0 and miniredis (unknown
// command), or an ACL user without FUNCTION (NOPERM).
func functionsRefused(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := strings.ToLower(rerr.Error())
	return strings.HasPrefix(msg, "noperm") || strings.Contains(msg, "unknown command") ||
		strings.Contains(msg, "unknown subcommand") || strings.Contains(msg, "not allowed")
}

// functions reports whether the store calls the library (FCALL), not the
// scripts (EVALSHA). The first call decides, once: it loads the library
// (on every master of a cluster); a server that refuses FUNCTION LOAD
// (functionsRefused) makes the store use EVALSHA for good, logged once.
// Any other error (the network) leaves it undecided, for the next call.
func (s *scripts) functions(ctx context.Context, c redis.UniversalClient) (bool, error) {
	switch s.mode.Load() {
	case modeFunctions:
		return true, nil
	case modeEval:
		return false, nil
	}
	s.modeMu.Lock()
	defer s.modeMu.Unlock()
	if m := s.mode.Load(); m != modeUndecided {
		return m == modeFunctions, nil
	}
	if s.evalOnly {
		s.mode.Store(modeEval)
		return false, nil
	}
	err := s.loadLibrary(ctx, c)
	switch {
	case err == nil:
		s.mode.Store(modeFunctions)
		return true, nil
	case functionsRefused(err):
		// Some servers echo the command, the library's whole text.
		msg := err.Error()
		if len(msg) > 160 {
			msg = msg[:160] + "..."
		}
		level := slog.LevelInfo // an ACL user without FUNCTION: to fix
		if !strings.Contains(msg, "NOPERM") {
			level = slog.LevelDebug // no Functions on this server
		}
		slog.Default().Log(ctx, level, "taskflow: the server refuses Redis Functions: scripts run with EVALSHA",
			"library", s.lib.Name, "err", msg)
		s.mode.Store(modeEval)
		return false, nil
	}
	return false, err
}

// loadLibrary loads the library, on every master of a cluster. Its name
// is its version: a library of that name is this one, and FUNCTION LOAD
// answers "already exists" before compiling anything (compiling costs
// the server about 2 ms, REPLACE would pay it on every store's first
// call).
func (s *scripts) loadLibrary(ctx context.Context, c redis.UniversalClient) error {
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			return s.loadLibraryOn(ctx, n)
		})
	}
	return s.loadLibraryOn(ctx, c)
}

func (s *scripts) loadLibraryOn(ctx context.Context, c redis.Cmdable) error {
	if err := c.FunctionLoad(ctx, s.lib.Text).Err(); err != nil && !strings.Contains(err.Error(), "already exists") {
		return fmt.Errorf("taskflow: loading library %s: %w", s.lib.Name, err)
	}
	return nil
}

// reloadFor loads the library again on the node that holds keys[0] (on
// every master when there is no key), after a "function not found".
func (s *scripts) reloadFor(ctx context.Context, c redis.UniversalClient, keys []string) error {
	if cc, ok := c.(*redis.ClusterClient); ok && len(keys) > 0 {
		n, err := cc.MasterForKey(ctx, keys[0])
		if err != nil {
			return err
		}
		return s.loadLibraryOn(ctx, n)
	}
	return s.loadLibrary(ctx, c)
}

// fcall sends sc's function on c: FCALL_RO for a script that only reads.
func (sc *script) fcall(ctx context.Context, c processor, keys []string, args []any, boxed map[string]any) *redis.Cmd {
	var name any = "fcall" // boxed from a constant: no allocation
	if !sc.writes {
		name = "fcall_ro"
	}
	// The command line go-redis's FCall would build, with the keys boxed
	// once per store where they can be (keyspace.boxed: a shard's keys
	// that no flow owns): a call then allocates for its own keys only.
	line := make([]any, 0, 3+len(keys)+len(args))
	line = append(line, name, sc.fnBoxed, len(keys))
	for _, k := range keys {
		if b, ok := boxed[k]; ok {
			line = append(line, b)
		} else {
			line = append(line, k)
		}
	}
	line = append(line, args...)
	cmd := redis.NewCmd(ctx, line...)
	if len(keys) > 0 {
		cmd.SetFirstKeyPos(3)
	}
	_ = c.Process(ctx, cmd)
	return cmd
}

// processor is what both a client and a pipeline are: they run a
// command built by hand.
type processor interface {
	Process(ctx context.Context, cmd redis.Cmder) error
}

// loadAll loads the library, or every script when the store uses
// EVALSHA, on every master of a cluster.
func (s *scripts) loadAll(ctx context.Context, c redis.UniversalClient) error {
	undecided := s.mode.Load() == modeUndecided
	fn, err := s.functions(ctx, c)
	if err != nil {
		return err
	}
	if fn {
		if undecided {
			return nil // functions just loaded it
		}
		return s.loadLibrary(ctx, c)
	}
	for _, sc := range s.all {
		if err := sc.Load(ctx, c).Err(); err != nil {
			return fmt.Errorf("taskflow: loading script %s: %w", sc.name, err)
		}
	}
	return nil
}

// call runs sc on the node that holds keys[0], without replica acks:
// FCALL, or EVALSHA (then EVAL) when the store uses scripts. A function
// the server lost is loaded again and called once more, as EVAL follows a
// NOSCRIPT: neither miss ran the script.
func (s *RedisStore) call(ctx context.Context, sc *script, fn bool, keys []string, args []any) (any, error) {
	if !fn {
		return sc.Run(ctx, s.calls, keys, args...).Result()
	}
	v, err := sc.fcall(ctx, s.calls, keys, args, s.keys.boxed).Result()
	if !isNoFunction(err) {
		return v, err
	}
	if lerr := s.scripts.reloadFor(ctx, s.client, keys); lerr != nil {
		return nil, fmt.Errorf("%w (after %w)", lerr, err)
	}
	return sc.fcall(ctx, s.calls, keys, args, s.keys.boxed).Result()
}

// eval runs sc on the node that holds keys[0]: FCALL of the library (see
// functions), or EVALSHA, then EVAL when the server lost the script (a
// restart, a failover, SCRIPT FLUSH); a lost function is loaded again and
// called again (call). A script that writes, under WithReplicaAcks, is
// followed by WAIT on the same connection; too few confirmations give the
// reply and a *NotReplicatedError. A call waits for replicas at most the
// timeout in all: the WAIT sent after a NOSCRIPT or function-not-found
// miss waits only for what is left of it (the first one, sent behind the
// missed call, already waited). Other errors are Redis's, not mapped.
func (s *RedisStore) eval(ctx context.Context, sc *script, keys []string, args []any) (any, error) {
	fn, err := s.scripts.functions(ctx, s.client)
	if err != nil {
		return nil, err
	}
	if s.replicas <= 0 || !sc.writes {
		return s.call(ctx, sc, fn, keys, args)
	}
	var node redis.Cmdable = s.client
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		c, err := cc.MasterForKey(ctx, keys[0])
		if err != nil {
			return nil, err
		}
		node = c
	}
	do := func(again bool, wait time.Duration) (*redis.Cmd, *redis.IntCmd) {
		pipe := node.Pipeline()
		var cmd *redis.Cmd
		switch {
		case fn:
			cmd = sc.fcall(ctx, pipe, keys, args, s.keys.boxed)
		case again:
			cmd = sc.Eval(ctx, pipe, keys, args...)
		default:
			cmd = sc.EvalSha(ctx, pipe, keys, args...)
		}
		w := redis.NewIntCmd(ctx, "wait", s.replicas, wait.Milliseconds())
		_ = pipe.Process(ctx, w)
		_, _ = pipe.Exec(ctx)
		return cmd, w
	}
	start := time.Now()
	cmd, w := do(false, s.replTimeout)
	if fn && isNoFunction(cmd.Err()) {
		if lerr := s.scripts.loadLibraryOn(ctx, node); lerr != nil {
			return nil, fmt.Errorf("%w (after %w)", lerr, cmd.Err())
		}
	}
	if isNoScript(cmd.Err()) || fn && isNoFunction(cmd.Err()) {
		// WAIT 0 would block for ever: wait at least a millisecond.
		cmd, w = do(true, max(s.replTimeout-time.Since(start), time.Millisecond))
	}
	v, err := cmd.Result()
	if err != nil {
		return nil, err
	}
	if werr := w.Err(); werr != nil {
		return v, &NotReplicatedError{Wanted: s.replicas, Acked: 0, Err: werr}
	}
	if n := int(w.Val()); n < s.replicas {
		return v, &NotReplicatedError{Wanted: s.replicas, Acked: n}
	}
	return v, nil
}

// callError maps what eval returned for flow id to what the caller gets:
// a refusal becomes its typed error, a write not confirmed by replicas
// names the flow.
func callError(raw error, id uuid.UUID) error {
	if nre := notReplicated(raw); nre != nil {
		return fmt.Errorf("taskflow: flow %s: %w", id, nre)
	}
	return scriptError(raw, id)
}

// runError is callError for a run of sc with args: a write whose reply
// was lost (the connection broke under it) also says it may have
// applied, with its call id (args, the script's ARGV, start with the
// common head when args[0] is the flow id: lua/include/context.lua).
func runError(raw error, id uuid.UUID, sc *script, args []any) error {
	if sc.writes && lostReply(raw) {
		oe := &OutcomeUnknownError{FlowID: id, Err: raw}
		if len(args) > 2 && id != uuid.Nil && args[0] == id.String() {
			oe.CallID, _ = args[2].(string)
		}
		return oe
	}
	return callError(raw, id)
}

// run is how a call runs one script for flow id (uuid.Nil when none):
// the layout check, eval (EVALSHA, replica acks), the observer (for
// a flow's writes), and the refusal mapped to its typed error.
// runFlowScript is run for a script that answers with a flow, and
// runPipelined for many scripts in one round trip.
func (s *RedisStore) run(ctx context.Context, sc *script, id uuid.UUID, keys []string, args ...any) (any, error) {
	if err := s.checkLayout(ctx); err != nil {
		return nil, err
	}
	start := s.observeStart()
	v, raw := s.eval(ctx, sc, keys, args)
	if sc.observed {
		s.observeRun(ctx, sc, id, start, raw)
	}
	return v, runError(raw, id, sc, args)
}

// runFlowScript runs a script that answers {flow hash, extra} (see run)
// and decodes the flow. meta (at most one) tells the observer what the
// run is.
func (s *RedisStore) runFlowScript(ctx context.Context, sc *script, id uuid.UUID, keys []string, args []any, meta ...opMeta) (f *Flow, arr []any, err error) {
	if err := s.checkLayout(ctx); err != nil {
		return nil, nil, err
	}
	var raw error
	if s.observing() {
		defer s.observeDeferred(ctx, sc, meta, id, time.Now(), &f, &raw, &err)
	}
	v, raw := s.eval(ctx, sc, keys, args)
	nre := notReplicated(raw)
	if raw != nil && nre == nil {
		return nil, nil, runError(raw, id, sc, args)
	}
	arr, ok := v.([]any)
	if !ok || len(arr) < 2 {
		return nil, nil, fmt.Errorf("taskflow: unexpected script reply %T", v)
	}
	lean := len(args) > 7 && args[7] == "lean"
	f, err = decodeFlowReply(id, arr, !lean)
	if err != nil {
		return nil, nil, err
	}
	if nre != nil {
		// Applied, not confirmed: the caller gets the flow and the error.
		nre.Flow = f
		return f, arr, runError(raw, id, sc, args)
	}
	return f, arr, nil
}

// scriptCall is one script run in a pipeline.
type scriptCall struct {
	script *script
	keys   []string
	args   []any
}

// runPipelined runs calls in one pipeline (split by node on a cluster),
// after the layout check; errors are Redis's, for the caller to map with
// scriptError. A call that meets NOSCRIPT (the server lost its cache
// after a restart or failover) or "function not found" is re-run on its
// own, which loads the script or the library again (call). metas, when given, has one entry per call, for the
// observer. Pipelined writes do not wait for replicas (WithReplicaAcks):
// the tick, their one caller, redoes what a crash lost.
func (s *RedisStore) runPipelined(ctx context.Context, calls []scriptCall, metas ...opMeta) ([]any, []error) {
	vals := make([]any, len(calls))
	errs := make([]error, len(calls))
	if len(calls) == 0 {
		return vals, errs
	}
	if err := s.ensureLoaded(ctx); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return vals, errs
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.Cmd, len(calls))
	var start time.Time
	if s.observing() {
		start = time.Now()
	}
	fn := s.scripts.mode.Load() == modeFunctions // ensureLoaded decided
	for i, c := range calls {
		if fn {
			cmds[i] = c.script.fcall(ctx, pipe, c.keys, c.args, s.keys.boxed)
		} else {
			cmds[i] = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
		}
	}
	_, _ = pipe.Exec(ctx)
	for i, cmd := range cmds {
		v, err := cmd.Result()
		if isNoScript(err) || fn && isNoFunction(err) {
			v, err = s.call(ctx, calls[i].script, fn, calls[i].keys, calls[i].args)
		}
		vals[i], errs[i] = v, err
	}
	if s.observing() {
		s.observePipelined(ctx, calls, metas, vals, errs, start)
	}
	return vals, errs
}

// notReplicated returns the *NotReplicatedError in err's chain, or nil.
func notReplicated(err error) *NotReplicatedError {
	if err == nil {
		return nil // the common case, without errors.As's allocation
	}
	var nre *NotReplicatedError
	if errors.As(err, &nre) {
		return nre
	}
	return nil
}

// applied reports whether err leaves the write applied: nil, or
// applied but not confirmed replicated.
func applied(err error) bool { return err == nil || errors.Is(err, ErrNotReplicated) }

// WithReplicaAcks makes every call that writes (a flow, its steps, its
// lease, early events: every script the store runs for a caller) wait
// until n replicas received the write (Redis WAIT, up to timeout, sent
// on the same connection right after the script) before it is
// acknowledged: a crash that promotes one of those replicas keeps it.
// When fewer replicas confirm in time the call returns a
// *NotReplicatedError (ErrNotReplicated): the write applied but is not
// known to be replicated. Default 0: no waiting, the write is
// acknowledged once the master applied it (asynchronous replication: a
// crash promoting a lagging replica loses it). Keep timeout below the
// client's ReadTimeout. A tick's resumes and lease expiries are not
// waited for: one lost in a crash is due again, and done again, by the
// next tick.
func WithReplicaAcks(n int, timeout time.Duration) StoreOption {
	return func(c *storeConfig) { c.replicas, c.replTimeout = n, timeout }
}

// lostReply reports an error of a command that was sent but got no
// reply: the connection ended or timed out. A reply from the server
// (redis.Error: a refusal, READONLY, NOSCRIPT, ...) is not one, nor a
// pool that had no connection to give (nothing was sent).
func lostReply(err error) bool {
	if err == nil {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) || errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrClosed) {
		return false
	}
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}
