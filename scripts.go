package taskflow

import (
	"bufio"
	"context"
	"embed"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// lua/*.lua are the scripts, one per call; lua/include/*.lua the helpers
// they include. A file names what it includes with lines
//
//	--@include <name>
//
// (lua/include/<name>.lua, or "prelude": the tables generated from Go
// below); the loader puts each include once, includes of includes first,
// before the script's own text, so a script on the server is
// self-contained and shows what it uses.
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
	writes   bool
	observed bool
}

// scripts holds every compiled script of a store, by file name.
type scripts struct {
	create, transition, updateState, requestCancel, writeFlow *script
	recordStep, insertStep, pruneFlow                         *script
	verifyFlow, reindexFlow, deleteOrphans                    *script
	claim, extendLease, releaseLease, expireLease             *script
	pageAfter, tickCancel, verifyEntry, indexStep             *script
	retry                                                     *script
	insertFlow, appendEventAt, getStep, findStep, updateStep  *script // import_store.go
	deliverEvent, earlyKeep, earlyTake, earlySettle           *script
	publishResume                                             *script
	// transitionEarly is transition for a wait on an external event: it
	// includes the early events' helpers, which the other transitions do not
	// pay for.
	transitionEarly *script
	all             []*script
}

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
	}
}

// loadScripts assembles and compiles every script (cluster: sharded
// pub/sub).
func loadScripts(cluster bool) (*scripts, error) {
	s := &scripts{}
	l := newLuaLoader(cluster)
	for _, x := range s.files() {
		src, err := l.assemble(x.file)
		if err != nil {
			return nil, err
		}
		*x.dst = &script{Script: redis.NewScript(src), name: x.file, writes: x.writes,
			observed: x.writes && !strings.HasPrefix(x.file, "early_") && x.file != "publish_resume"}
		s.all = append(s.all, *x.dst)
	}
	return s, nil
}

// luaLoader assembles scripts, reading and splitting each file once.
type luaLoader struct {
	cluster bool
	files   map[string]*luaFile
}

// luaFile is one Lua file as the loader reads it: its includes, and (an
// include) its top-level definitions.
type luaFile struct {
	path     string
	text     string
	includes []string // paths, "prelude" for the generated one
	chunks   []luaChunk
}

// luaChunk is one top-level definition of an include: from a line that
// starts with "local " to the next (its comments go with the one before).
type luaChunk struct {
	names []string // what it defines
	uses  []string // the names its code mentions
	text  string
}

func newLuaLoader(cluster bool) *luaLoader {
	return &luaLoader{cluster: cluster, files: map[string]*luaFile{}}
}

// file reads path (or renders the prelude) once.
func (l *luaLoader) file(path string) (*luaFile, error) {
	if f := l.files[path]; f != nil {
		return f, nil
	}
	f := &luaFile{path: path}
	if path == "prelude" {
		f.text = luaPrelude(l.cluster)
	} else {
		body, err := luaFiles.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("taskflow: lua script: %w", err)
		}
		f.text = string(body)
		names, err := luaIncludes(f.text)
		if err != nil {
			return nil, fmt.Errorf("taskflow: %s: %w", path, err)
		}
		for _, n := range names {
			if n == "prelude" {
				f.includes = append(f.includes, n)
			} else {
				f.includes = append(f.includes, "lua/include/"+n+".lua")
			}
		}
	}
	f.chunks = splitChunks(f.text)
	l.files[path] = f
	return f, nil
}

// assemble returns lua/<name>.lua with its includes resolved: each
// include once, includes of includes first, and of an include only the
// top-level definitions the script reaches (directly, or through what
// it keeps), since Redis runs every definition of a script on every
// call. A name counts when it stands as a word outside comments and not
// as a field (after '.' or ':'); a definition kept for a name that only
// looks like a use costs a definition, never correctness.
func (l *luaLoader) assemble(name string) (string, error) {
	var order []*luaFile // includes first, the script last
	done := map[string]bool{}
	var add func(path string, stack []string) error
	add = func(path string, stack []string) error {
		if done[path] {
			return nil
		}
		for _, p := range stack {
			if p == path {
				return fmt.Errorf("taskflow: lua include cycle: %s", strings.Join(append(stack, path), " -> "))
			}
		}
		f, err := l.file(path)
		if err != nil {
			return err
		}
		for _, inc := range f.includes {
			if err := add(inc, append(stack, path)); err != nil {
				return err
			}
		}
		done[path] = true
		order = append(order, f)
		return nil
	}
	if err := add("lua/"+name+".lua", nil); err != nil {
		return "", err
	}
	script, incs := order[len(order)-1], order[:len(order)-1]
	used := map[string]bool{}
	for _, w := range luaWords(script.text) {
		used[w] = true
	}
	kept := map[*luaChunk]bool{}
	for changed := true; changed; {
		changed = false
		for _, f := range incs {
			for i := range f.chunks {
				c := &f.chunks[i]
				if kept[c] || !anyUsed(c.names, used) {
					continue
				}
				kept[c], changed = true, true
				for _, w := range c.uses {
					used[w] = true
				}
			}
		}
	}
	var b strings.Builder
	for _, f := range incs {
		b.WriteString("-- " + strings.TrimPrefix(f.path, "lua/") + "\n")
		for i := range f.chunks {
			if kept[&f.chunks[i]] {
				b.WriteString(f.chunks[i].text)
			}
		}
	}
	b.WriteString("-- " + strings.TrimPrefix(script.path, "lua/") + "\n")
	b.WriteString(script.text)
	b.WriteString("\n")
	return b.String(), nil
}

func anyUsed(names []string, used map[string]bool) bool {
	for _, n := range names {
		if used[n] {
			return true
		}
	}
	return false
}

// splitChunks splits an include's text into its top-level definitions;
// what comes before the first one (the header comment, the includes) is
// left out.
func splitChunks(text string) []luaChunk {
	var out []luaChunk
	for _, line := range strings.SplitAfter(text, "\n") {
		if strings.HasPrefix(line, "local ") {
			out = append(out, luaChunk{names: luaDefines(line)})
		}
		if len(out) > 0 {
			out[len(out)-1].text += line
		}
	}
	for i := range out {
		out[i].uses = luaWords(out[i].text)
	}
	return out
}

// luaDefines returns the names a "local ..." line defines: the function
// of "local function f(", the variables of "local a, b = ...".
func luaDefines(line string) []string {
	rest := strings.TrimPrefix(line, "local ")
	if fn, ok := strings.CutPrefix(rest, "function "); ok {
		name, _, _ := strings.Cut(fn, "(")
		return []string{strings.TrimSpace(name)}
	}
	vars, _, ok := strings.Cut(rest, "=")
	if !ok {
		vars = rest
	}
	var out []string
	for _, v := range strings.Split(vars, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// luaWords returns the identifiers of Lua source that stand as names:
// outside "--" comments (the scripts use no long comments and no "--"
// inside strings), and not fields (after '.' or ':').
func luaWords(src string) []string {
	var out []string
	isStart := func(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isPart := func(c byte) bool { return isStart(c) || c >= '0' && c <= '9' }
	for _, line := range strings.Split(src, "\n") {
		if i := strings.Index(line, "--"); i >= 0 {
			line = line[:i]
		}
		field := false
		for i := 0; i < len(line); {
			c := line[i]
			switch {
			case isStart(c):
				j := i + 1
				for j < len(line) && isPart(line[j]) {
					j++
				}
				if !field {
					out = append(out, line[i:j])
				}
				field, i = false, j
			case c >= '0' && c <= '9':
				for i < len(line) && isPart(line[i]) {
					i++
				}
				field = false
			case c == '.' || c == ':':
				field, i = true, i+1
			case c == ' ' || c == '\t':
				i++ // "a . b" keeps b a field
			default:
				field, i = false, i+1
			}
		}
	}
	return out
}

// luaIncludes returns the names a Lua file includes, in order.
func luaIncludes(src string) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(src))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		rest, ok := strings.CutPrefix(line, "--@include")
		if !ok {
			continue
		}
		name := strings.TrimSpace(rest)
		if name == "" || strings.ContainsAny(name, "/. ") {
			return nil, fmt.Errorf("bad include %q", line)
		}
		out = append(out, name)
	}
	return out, sc.Err()
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
	{"EXISTS", func(id uuid.UUID, _ string) error { return fmt.Errorf("%w: flow %s", ErrAlreadyExists, id) }},
	{"COUNTLIMIT", func(id uuid.UUID, d string) error {
		var rev, seq int64
		_, _ = fmt.Sscanf(d, "%d %d", &rev, &seq)
		return fmt.Errorf("%w: %w: flow %s is at revision %d, event id %d: a change would pass %d, the most a flow counts to (MaxRevision)", ErrInvalidData, ErrRevisionLimit, id, rev, seq, MaxRevision)
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

// luaPrelude renders Go's tables for the scripts ("--@include prelude"):
// MAX_COUNT (MaxRevision),
// PUBLISH ('SPUBLISH' on a cluster: sharded pub/sub keeps messages on the
// slot's node), ERR (the refusal codes), S_<STATUS> (the status names),
// STATUS (per status: index, the position of its index key in the flow
// key set; terminal; runnable; waits), RECORD (recordFields) and
// ALLOWED[to][from] (the transition table).
func luaPrelude(cluster bool) string {
	var b strings.Builder
	b.WriteString("-- prelude: generated from Go (scripts.go, status.go): do not edit\n")
	if cluster {
		b.WriteString("local PUBLISH = 'SPUBLISH'\n")
	} else {
		b.WriteString("local PUBLISH = 'PUBLISH'\n")
	}
	fmt.Fprintf(&b, "local MAX_COUNT = %d\n", MaxRevision)
	b.WriteString("local ERR = {")
	codes := make([]string, 0, len(refusals))
	for _, r := range refusals {
		codes = append(codes, r.code)
	}
	sort.Strings(codes)
	for _, c := range codes {
		fmt.Fprintf(&b, "%s=%q,", c, c)
	}
	b.WriteString("}\n")
	for _, st := range allStatuses {
		fmt.Fprintf(&b, "local S_%s = %q\n", strings.ToUpper(string(st)), st)
	}
	b.WriteString("local STATUS = {")
	for i, st := range allStatuses {
		im := statusImplies[st]
		fmt.Fprintf(&b, "[%q]={index=%d,terminal=%t,runnable=%t,waits=%t},", st, firstStatusKey+i, st.IsTerminal(), im.runnable, im.waits)
	}
	b.WriteString("}\nlocal RECORD = {")
	for _, name := range recordFields {
		fmt.Fprintf(&b, "%q,", name)
	}
	b.WriteString("}\nlocal ALLOWED = {")
	for _, to := range allStatuses {
		fmt.Fprintf(&b, "[%q]={", to)
		for _, from := range sourcesOf(to) {
			fmt.Fprintf(&b, "[%q]=true,", from)
		}
		b.WriteString("},")
	}
	b.WriteString("}\n")
	return b.String()
}

// recordFields are a flow hash's record fields (the rest are the state's
// and the scripts' own): the prelude's RECORD, the order of a lean reply.
var recordFields = []string{
	"controller", "goal", "owner", "origin",
	"step", "status", "cancel", "rev", "created",
	"updated", "wait", "corr", "raw", "size",
	"seq", "att", "tp", "ep",
}

// replyFields returns the flow fields of a {flow, extra} script reply:
// field/value pairs, or with a lean reply ({values, extra, 'record'})
// the values of recordFields in order.
func replyFields(arr []any) map[string]string {
	if len(arr) > 2 && arr[2] == "record" {
		vals, _ := arr[0].([]any)
		m := make(map[string]string, len(recordFields))
		for i, name := range recordFields {
			if i < len(vals) {
				if v, ok := vals[i].(string); ok {
					m[name] = v
				}
			}
		}
		return m
	}
	return pairsToMap(arr[0])
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

// loadAll loads every script, on every master of a cluster.
func (s *scripts) loadAll(ctx context.Context, c redis.UniversalClient) error {
	for _, sc := range s.all {
		if err := sc.Load(ctx, c).Err(); err != nil {
			return fmt.Errorf("taskflow: loading script %s: %w", sc.name, err)
		}
	}
	return nil
}

// eval runs sc on the node that holds keys[0]: EVALSHA, then EVAL when
// the server lost the script (a restart, a failover, SCRIPT FLUSH). A
// script that writes, under WithReplicaAcks, is followed by WAIT on the
// same connection; too few confirmations give the reply and a
// *NotReplicatedError. A call waits for replicas at most the timeout in
// all: the WAIT sent after a NOSCRIPT miss waits only for what is left of
// it (the first one, sent behind the missed EVALSHA, already waited).
// Other errors are Redis's, not mapped.
func (s *RedisStore) eval(ctx context.Context, sc *script, keys []string, args []any) (any, error) {
	if s.replicas <= 0 || !sc.writes {
		return sc.Run(ctx, s.client, keys, args...).Result()
	}
	var node interface{ Pipeline() redis.Pipeliner } = s.client
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		c, err := cc.MasterForKey(ctx, keys[0])
		if err != nil {
			return nil, err
		}
		node = c
	}
	do := func(eval bool, wait time.Duration) (*redis.Cmd, *redis.IntCmd) {
		pipe := node.Pipeline()
		var cmd *redis.Cmd
		if eval {
			cmd = sc.Eval(ctx, pipe, keys, args...)
		} else {
			cmd = sc.EvalSha(ctx, pipe, keys, args...)
		}
		w := redis.NewIntCmd(ctx, "wait", s.replicas, wait.Milliseconds())
		_ = pipe.Process(ctx, w)
		_, _ = pipe.Exec(ctx)
		return cmd, w
	}
	start := time.Now()
	cmd, w := do(false, s.replTimeout)
	if isNoScript(cmd.Err()) {
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
	f, err = decodeFlow(id, replyFields(arr), !lean)
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
// after a restart or failover) is re-run on its own, which loads the
// script again. metas, when given, has one entry per call, for the
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
	for i, c := range calls {
		cmds[i] = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	_, _ = pipe.Exec(ctx)
	for i, cmd := range cmds {
		v, err := cmd.Result()
		if isNoScript(err) {
			v, err = calls[i].script.Run(ctx, s.client, calls[i].keys, calls[i].args...).Result()
		}
		vals[i], errs[i] = v, err
	}
	if s.observing() {
		s.observePipelined(ctx, calls, metas, vals, errs, start)
	}
	return vals, errs
}
