package taskflow

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

var updateLuaGolden = flag.Bool("update-lua", false, "rewrite testdata/lua_definitions.golden")

// luaSources returns every Lua file (scripts and includes) by path.
func luaSources(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := fs.WalkDir(luaFiles, "lua", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := luaFiles.ReadFile(path)
		out[path] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEveryScriptIsLoaded: each lua/*.lua is a script the store loads,
// and each script assembles with every include once.
func TestEveryScriptIsLoaded(t *testing.T) {
	sc, err := loadScripts(false)
	if err != nil {
		t.Fatal(err)
	}
	loaded := map[string]bool{}
	for _, s := range sc.all {
		loaded[s.name] = true
		src, err := assembleScript(s.name, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, inc := range []string{"-- prelude", "-- include/context.lua", "-- include/errors.lua"} {
			if n := strings.Count(src, "\n"+inc); n > 1 {
				t.Errorf("%s: %q %d times", s.name, inc, n)
			}
		}
	}
	for path := range luaSources(t) {
		if strings.HasPrefix(path, "lua/include/") {
			continue
		}
		name := strings.TrimSuffix(strings.TrimPrefix(path, "lua/"), ".lua")
		if !loaded[name] {
			t.Errorf("%s is not loaded by loadScripts", path)
		}
	}
}

// TestScriptDefinitionsGolden: the definitions each script keeps of its
// includes (the shaker's choice) are those of
// testdata/lua_definitions.golden; after a change to lua/, review the
// difference and rewrite the file with go test -run ScriptDefinitions -update-lua.
func TestScriptDefinitionsGolden(t *testing.T) {
	def := regexp.MustCompile(`(?m)^local (?:function ([A-Za-z_]\w*)|([A-Za-z_][\w, ]*?)\s*=)`)
	var b strings.Builder
	s := &scripts{}
	for _, x := range s.files() {
		src, err := assembleScript(x.file, false)
		if err != nil {
			t.Fatal(err)
		}
		src, _, _ = strings.Cut(src, "\n-- "+x.file+".lua\n") // the includes only
		var names []string
		for _, m := range def.FindAllStringSubmatch(src, -1) {
			for _, n := range strings.Split(m[1]+m[2], ",") {
				names = append(names, strings.TrimSpace(n))
			}
		}
		fmt.Fprintf(&b, "%s: %s\n", x.file, strings.Join(names, " "))
	}
	const golden = "testdata/lua_definitions.golden"
	if *updateLuaGolden {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != string(want) {
		t.Errorf("the scripts keep other definitions than %s:\ngot:\n%s", golden, got)
	}
}

// luaBuiltins are the globals a Redis script may call.
var luaBuiltins = map[string]bool{
	"tonumber": true, "tostring": true, "ipairs": true, "pairs": true, "unpack": true,
	"type": true, "pcall": true, "error": true, "select": true, "assert": true,
	"function": true, "if": true, "while": true, "and": true, "or": true, "not": true,
	"return": true, "elseif": true, "until": true, "in": true,
}

// TestScriptsDefineWhatTheyCall: every function a script (with its
// includes) calls by a bare name is defined in it, so a helper used
// without its include fails here, not on the server at the first call
// that reaches that line.
func TestScriptsDefineWhatTheyCall(t *testing.T) {
	call := regexp.MustCompile(`(^|[^.:\w])([A-Za-z_]\w*)\s*\(`)
	def := regexp.MustCompile(`local\s+function\s+([A-Za-z_]\w*)|local\s+([A-Za-z_]\w*)\s*=\s*function`)
	params := regexp.MustCompile(`function\s*[A-Za-z_]*\s*\(([^)]*)\)`)
	sc, err := loadScripts(false)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sc.all {
		src, _ := assembleScript(s.name, false)
		code := luaCodeOnly(src)
		defined := map[string]bool{}
		for _, m := range def.FindAllStringSubmatch(code, -1) {
			defined[m[1]+m[2]] = true
		}
		for _, m := range params.FindAllStringSubmatch(code, -1) {
			for _, p := range strings.Split(m[1], ",") {
				defined[strings.TrimSpace(p)] = true // a function passed in
			}
		}
		var missing []string
		for _, m := range call.FindAllStringSubmatch(code, -1) {
			if name := m[2]; !defined[name] && !luaBuiltins[name] {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			sort.Strings(missing)
			t.Errorf("%s calls what it does not define or include: %v", s.name, missing)
		}
	}
}

// TestHelpersReadNoArguments: the helpers of lua/include read neither
// KEYS nor ARGV; a script passes what they need (its context).
func TestHelpersReadNoArguments(t *testing.T) {
	word := regexp.MustCompile(`\b(KEYS|ARGV)\b`)
	for path, src := range luaSources(t) {
		if !strings.HasPrefix(path, "lua/include/") {
			continue
		}
		code := luaCodeOnly(src)
		// context.lua is where a script hands its KEYS and ARGV over,
		// as parameters.
		code = strings.ReplaceAll(code, "(keys, argv)", "")
		if m := word.FindString(code); m != "" {
			t.Errorf("%s reads %s", path, m)
		}
	}
}

// TestRefusalCodesAreOneTable: every code a script refuses with is in
// Go's table (the prelude's ERR), and every code of the table is used.
func TestRefusalCodesAreOneTable(t *testing.T) {
	use := regexp.MustCompile(`ERR\.([A-Z]+)`)
	used := map[string]bool{}
	for path, src := range luaSources(t) {
		code := luaCodeOnly(src)
		if strings.Contains(code, "err('") || strings.Contains(code, `err("`) {
			t.Errorf("%s refuses with a code typed as a string", path)
		}
		for _, m := range use.FindAllStringSubmatch(code, -1) {
			used[m[1]] = true
			if _, ok := refusalByCode[m[1]]; !ok {
				t.Errorf("%s refuses with %s, which Go does not map", path, m[1])
			}
		}
	}
	for _, r := range refusals {
		if !used[r.code] {
			t.Errorf("refusal %s is in the table but no script uses it", r.code)
		}
	}
}

// TestNoStatusNameTypedInLua: the scripts name statuses through the
// prelude (S_RUNNING, STATUS[s]), never as string literals compared
// with a status or passed as one. (Event kinds such as '"cancelled"'
// and the record field 'created' are other things of the same name.)
func TestNoStatusNameTypedInLua(t *testing.T) {
	names := make([]string, len(allStatuses))
	for i, st := range allStatuses {
		names[i] = string(st)
	}
	alt := strings.Join(names, "|")
	typed := regexp.MustCompile(`(==|~=|status\s*=|set_status\([^)]*|check_transition\([^)]*|STATUS\[)\s*['"](` + alt + `)['"]`)
	for path, src := range luaSources(t) {
		if m := typed.FindString(luaCodeOnly(src)); m != "" {
			t.Errorf("%s types a status: %s", path, m)
		}
	}
	if !typed.MatchString("if f.status == 'running' then") || !typed.MatchString(`set_status(c, f, "waiting")`) {
		t.Fatal("the check misses a typed status")
	}
}

// TestStatusTableMatchesTheStateMachine: what the prelude tells the
// scripts of each status follows from Go's tables.
func TestStatusTableMatchesTheStateMachine(t *testing.T) {
	p := luaPrelude(false).Text()
	for i, st := range allStatuses {
		im := statusImplies[st]
		want := `["` + string(st) + `"]={index=` + itoa(firstStatusKey+i) + ",terminal=" + boolStr(st.IsTerminal()) +
			",runnable=" + boolStr(im.runnable) + ",waits=" + boolStr(im.waits) + "}"
		if !strings.Contains(p, want) {
			t.Errorf("prelude lacks %s", want)
		}
		if st.IsTerminal() != (len(transitions[st]) == 0) {
			t.Errorf("%s: IsTerminal disagrees with the transition table", st)
		}
	}
	if FlowStatus("bogus").IsTerminal() {
		t.Error("an unknown status is terminal")
	}
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestLuaPreludeMatchesTable(t *testing.T) {
	p := luaPrelude(false).Text()
	for _, to := range Statuses() {
		for _, from := range sourcesOf(to) {
			if !strings.Contains(p, fmt.Sprintf("[%q]=true", from)) {
				t.Fatalf("prelude lacks %s -> %s", from, to)
			}
		}
	}
}

// assembleScript returns lua/<name>.lua as the store loads it.
func assembleScript(name string, cluster bool) (string, error) {
	l, err := newLuaLoader(cluster)
	if err != nil {
		return "", err
	}
	return l.Assemble(name)
}

// luaCodeOnly strips Lua comments (the scripts' tests read code only) ("--" to the end of the line).
func luaCodeOnly(src string) string {
	var b strings.Builder
	for _, line := range strings.Split(src, "\n") {
		if i := strings.Index(line, "--"); i >= 0 {
			line = line[:i]
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// waitReplicaUp waits until the replica's link to its master is up.
func waitReplicaUp(t *testing.T, c *redis.Client) {
	t.Helper()
	for i := 0; i < 200; i++ {
		info, _ := c.Info(context.Background(), "replication").Result()
		if strings.Contains(info, "master_link_status:up") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("replica never synced")
}

// TestReplicaAcksSurviveACrashPromotion: with WithReplicaAcks(1, ...),
// every acknowledged mutation is on the replica, so killing the master
// and promoting the replica loses none; with the replica gone, a
// mutation reports ErrNotReplicated and is applied.
func TestReplicaAcksSurviveACrashPromotion(t *testing.T) {
	master := startRedisServer(t)
	replica := startRedisServer(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.port))
	rc := replica.client(t)
	waitReplicaUp(t, rc)
	ctx := context.Background()
	store, err := NewRedisStore(master.client(t), WithPrefix("repl"), WithReplicaAcks(1, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(store)
	f := must(t, try(m.CreateMirrored(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})))
	for i := 0; i < 40; i++ {
		f = must(t, try(m.UpdateState(ctx, f.ID, map[string]int{"i": i}, "")))
	}
	// Steps and leases are writes too: each is acknowledged replicated.
	must(t, try(m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "observed", Status: StepRunning})))
	if err := store.InsertStep(ctx, &FlowStep{ID: uuid.New(), FlowID: f.ID, RunID: "inserted", Runtime: RuntimeManaged, Status: StepPending}); err != nil {
		t.Fatal(err)
	}
	_, l, err := m.Claim(ctx, "c", "w", time.Minute)
	if err != nil || l == nil {
		t.Fatalf("claim: %v %v", l, err)
	}
	l = must(t, try(m.Extend(ctx, l, 2*time.Minute)))
	if err := m.Release(ctx, l); err != nil {
		t.Fatal(err)
	}
	f = must(t, try(m.Finish(ctx, f.ID, nil)))
	master.kill() // a crash: no shutdown, no last sync
	if err := rc.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	promoted, err := NewRedisStore(rc, WithPrefix("repl"))
	if err != nil {
		t.Fatal(err)
	}
	got := must(t, try(NewManager(promoted).Get(ctx, f.ID)))
	if got.Revision != f.Revision || got.Status != StatusFinished {
		t.Fatalf("after promotion: rev %d %s, acknowledged rev %d %s", got.Revision, got.Status, f.Revision, f.Status)
	}
	for _, run := range []string{"observed", "inserted"} {
		if _, err := promoted.FindStepByRunID(ctx, f.ID, run); err != nil {
			t.Fatalf("step %s after promotion: %v", run, err)
		}
	}
	// The promoted server has no replica: a mutation applies but says
	// it is not confirmed replicated.
	waiting, err := NewRedisStore(rc, WithPrefix("repl"), WithReplicaAcks(1, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	wm := NewManager(waiting)
	g := must(t, try(NewManager(promoted).CreateMirrored(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})))
	_, err = wm.UpdateState(ctx, g.ID, map[string]int{"x": 1}, "")
	var nre *NotReplicatedError
	if !errors.Is(err, ErrNotReplicated) || !errors.As(err, &nre) || nre.Acked != 0 || nre.Wanted != 1 {
		t.Fatalf("update without a replica: %v", err)
	}
	if after := must(t, try(wm.Get(ctx, g.ID))); after.Revision != g.Revision+1 {
		t.Fatalf("the unconfirmed update did not apply: rev %d", after.Revision)
	}
	// Every other write reports the same: steps, and a lease's calls.
	_, _, err = NewManager(promoted).Claim(ctx, "c", "w", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wm.RecordStepObservation(ctx, StepObservation{FlowID: g.ID, RunID: "r", Status: StepRunning}); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("step observation without a replica: %v", err)
	}
	if err := waiting.InsertStep(ctx, &FlowStep{ID: uuid.New(), FlowID: g.ID, RunID: "i", Runtime: RuntimeManaged, Status: StepPending}); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("insert step without a replica: %v", err)
	}
	h := must(t, try(NewManager(promoted).CreateMirrored(ctx, CreateManagedInput{ControllerID: "d", Goal: "g", OwnerSessionKey: "o"})))
	_, hl, err := NewManager(promoted).Claim(ctx, "d", "w", time.Minute)
	if err != nil || hl == nil || hl.FlowID != h.ID {
		t.Fatalf("claim: %v %v", hl, err)
	}
	if _, err := wm.Extend(ctx, hl, 2*time.Minute); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("extend without a replica: %v", err)
	}
	if err := wm.Release(ctx, hl); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("release without a replica: %v", err)
	}
}

// TestNotReplicatedReturnsWhatApplied: on a master without its replica
// every write that answers with something returns it beside
// ErrNotReplicated, and the error carries it too: the claim's flow and
// lease, the update's revision, the created flow.
func TestNotReplicatedReturnsWhatApplied(t *testing.T) {
	master := startRedisServer(t)
	ctx := context.Background()
	store, err := NewRedisStore(master.client(t), WithPrefix("nrepl"), WithReplicaAcks(1, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(store)
	defer m.Close()
	// check wants err to be ErrNotReplicated carrying flow f (when f is
	// not nil) and returns it.
	check := func(name string, err error) *NotReplicatedError {
		t.Helper()
		nre := notReplicated(err)
		if !errors.Is(err, ErrNotReplicated) || nre == nil {
			t.Fatalf("%s: %v, want ErrNotReplicated", name, err)
		}
		return nre
	}
	f, err := m.CreateMirrored(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})
	if nre := check("create", err); f == nil || nre.Flow != f || f.Revision != 1 {
		t.Fatalf("create returned %+v, error carries %+v", f, nre.Flow)
	}
	got, l, err := m.Claim(ctx, "c", "w", time.Minute, WithClaimWait(0))
	if nre := check("claim", err); got == nil || l == nil || got.ID != f.ID || nre.Lease != l || nre.Flow != got {
		t.Fatalf("claim returned %v %v, error carries %v %v", got, l, nre.Flow, nre.Lease)
	}
	if held := must(t, try(m.LeaseOf(ctx, f.ID))); held == nil || held.Token != l.Token {
		t.Fatalf("the lease returned is not the one held: %+v vs %+v", l, held)
	}
	l2, err := m.Extend(ctx, l, 2*time.Minute)
	if nre := check("extend", err); l2 == nil || nre.Lease != l2 || !l2.ExpiresAt.After(l.ExpiresAt) {
		t.Fatalf("extend returned %+v", l2)
	}
	up, err := m.UpdateState(ctx, f.ID, map[string]int{"x": 1}, "next", WithLease(l2))
	if nre := check("update", err); up == nil || up.Revision != got.Revision+1 || nre.Flow != up {
		t.Fatalf("update returned %+v", up)
	}
	// The revision returned fences the next call.
	up2, err := m.UpdateState(ctx, f.ID, map[string]int{"x": 2}, "", IfRevision(up.Revision), WithLease(l2))
	if check("update at the returned revision", err); up2 == nil || up2.Revision != up.Revision+1 {
		t.Fatalf("update at the returned revision returned %+v", up2)
	}
	st, err := m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "r", Status: StepRunning}, WithLease(l2))
	if check("step", err); st == nil || st.RunID != "r" {
		t.Fatalf("step observation returned %+v", st)
	}
	nf, ev, err := store.UpdateAndAppend(ctx, up2, "note", map[string]int{"n": 1})
	if nre := check("update and append", err); nf == nil || ev == nil || nre.Flow != nf || nf.Revision != up2.Revision+1 {
		t.Fatalf("update and append returned %+v %+v", nf, ev)
	}
	fin, err := m.Finish(ctx, f.ID, nil)
	if nre := check("finish", err); fin == nil || fin.Status != StatusFinished || nre.Flow != fin {
		t.Fatalf("finish returned %+v", fin)
	}
	// A refusal is not applied: nothing comes back.
	if f, err := m.Finish(ctx, f.ID, nil); f != nil || errors.Is(err, ErrNotReplicated) || !errors.Is(err, ErrAlreadyTerminal) {
		t.Fatalf("finish of a finished flow: %v %v", f, err)
	}
}

// waitRecorder records the timeouts of the WAIT commands a client sends.
type waitRecorder struct {
	mu       sync.Mutex
	timeouts []int64
}

func (r *waitRecorder) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *waitRecorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}
func (r *waitRecorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.mu.Lock()
		for _, c := range cmds {
			if args := c.Args(); strings.EqualFold(c.Name(), "wait") && len(args) == 3 {
				ms, _ := args[2].(int64)
				r.timeouts = append(r.timeouts, ms)
			}
		}
		r.mu.Unlock()
		return next(ctx, cmds)
	}
}

// TestNoScriptWaitsForReplicasOnce: a write that meets NOSCRIPT (a new
// master's empty script cache), or "function not found", under
// WithReplicaAcks is re-sent with a WAIT for what is left of the timeout
// only, not a second whole one.
func TestNoScriptWaitsForReplicasOnce(t *testing.T) {
	for _, functions := range []bool{false, true} {
		name := "evalsha"
		if functions {
			name = "functions"
		}
		t.Run(name, func(t *testing.T) {
			master := startRedisServer(t)
			ctx := context.Background()
			c := master.client(t)
			rec := &waitRecorder{}
			c.AddHook(rec)
			const timeout = 200 * time.Millisecond
			opts := []StoreOption{WithPrefix("nsw"), WithReplicaAcks(1, timeout)}
			if !functions {
				opts = append(opts, withEvalOnly())
			}
			store, err := NewRedisStore(c, opts...)
			if err != nil {
				t.Fatal(err)
			}
			m := NewManager(store)
			f, err := m.CreateMirrored(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})
			if !errors.Is(err, ErrNotReplicated) {
				t.Fatal(err)
			}
			if got := store.scripts.mode.Load() == modeFunctions; got != functions {
				t.Fatalf("functions %v, want %v", got, functions)
			}
			if functions {
				deleteLibrary(t, c, store.scripts.lib.Name)
			} else if err := c.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			rec.mu.Lock()
			rec.timeouts = nil
			rec.mu.Unlock()
			if _, err := m.UpdateState(ctx, f.ID, map[string]int{"x": 1}, ""); !errors.Is(err, ErrNotReplicated) {
				t.Fatal(err)
			}
			if got := must(t, try(m.Get(ctx, f.ID))); got.Revision != f.Revision+1 {
				t.Fatalf("revision %d, want %d", got.Revision, f.Revision+1)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			// No replica: the first WAIT blocked its whole timeout, so the one
			// behind the re-sent script has (almost) nothing left.
			if len(rec.timeouts) != 2 || rec.timeouts[0] != timeout.Milliseconds() || rec.timeouts[1] >= timeout.Milliseconds() {
				t.Fatalf("WAIT timeouts sent: %v ms, want %d then less", rec.timeouts, timeout.Milliseconds())
			}
		})
	}
}

// TestLostReplySaysTheWriteMayHaveApplied: a write whose reply is lost
// for good (no go-redis retry left) returns an *OutcomeUnknownError
// naming the flow and its call id, and repeating the call with that id
// applies it once.
func TestLostReplySaysTheWriteMayHaveApplied(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b)
			c, d := lossyClientRetrying(t, b, -1)
			store := e.reopenStore(c)
			m := NewManager(store)
			defer m.Close()
			ctx := context.Background()
			if err := store.LoadScripts(ctx); err != nil {
				t.Fatal(err)
			}
			f := must(t, try(m.CreateMirrored(ctx, seedInput())))
			d.arm()
			_, err := m.UpdateState(ctx, f.ID, map[string]int{"x": 1}, "")
			var oe *OutcomeUnknownError
			if !errors.As(err, &oe) || !errors.Is(err, ErrOutcomeUnknown) || oe.FlowID != f.ID || oe.CallID == "" {
				t.Fatalf("update with its reply lost: %v", err)
			}
			if !strings.Contains(err.Error(), f.ID.String()) || !strings.Contains(err.Error(), "may have applied") {
				t.Fatalf("the error does not name the flow or say the write may have applied: %v", err)
			}
			events := eventCount(t, e.m, f.ID)
			again, err := m.UpdateState(ctx, f.ID, map[string]int{"x": 1}, "", WithCallID(oe.CallID))
			if err != nil || again.Revision != f.Revision+1 || eventCount(t, e.m, f.ID) != events {
				t.Fatalf("the repeat with the call id: %v, rev %v (was %d), events %d -> %d",
					err, again, f.Revision, events, eventCount(t, e.m, f.ID))
			}
		})
	}
}

// TestRepeatedCallIsWaitedForItsWrite: a write not confirmed replicated,
// repeated with its call id from another connection while the replica
// still lags, is not confirmed either: the repeat writes nothing, but the
// WAIT sent behind it covers what the master holds, the write it repeats
// included (Redis 7: a connection's WAIT counts from the master's offset
// at its last command; a bare WAIT on a fresh connection would confirm
// at once, which is why eval always sends the script first).
func TestRepeatedCallIsWaitedForItsWrite(t *testing.T) {
	master := startRedisServer(t)
	link := startLagLink(t, master.addr())
	replica := startRedisServer(t, "--replicaof", "127.0.0.1", strconv.Itoa(link.port()))
	waitReplicaUp(t, replica.client(t))
	ctx := context.Background()
	open := func() *Manager {
		store, err := NewRedisStore(master.client(t), WithPrefix("rep"), WithReplicaAcks(1, 200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		return NewManager(store)
	}
	m := open()
	f := must(t, try(m.CreateMirrored(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})))
	link.setLag(time.Hour) // the replica receives nothing from now on
	_, err := m.UpdateState(ctx, f.ID, map[string]int{"x": 1}, "", WithCallID("update-1"))
	if !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("update with the replica held back: %v", err)
	}
	again, err := open().UpdateState(ctx, f.ID, map[string]int{"x": 1}, "", WithCallID("update-1"))
	if !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("the repeat, on another connection, with the write still not on the replica: %v", err)
	}
	if again == nil || again.Revision != f.Revision+1 {
		t.Fatalf("the repeat applied again or answered otherwise: %+v", again)
	}
}

// scriptRefs are the names a command that runs sc carries after its own
// name: its SHA (EVALSHA) and its function (FCALL, FCALL_RO).
func scriptRefs(sc *script) []string { return []string{sc.Hash(), sc.fn} }

// TestLibraryText: the library is one versioned text that defines the
// prelude and every helper once, at its top level, and registers every
// script as tf_<version>_<script>, the scripts that only read with the
// no-writes flag.
func TestLibraryText(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		sc, err := loadScripts(cluster)
		if err != nil {
			t.Fatal(err)
		}
		lib := sc.lib
		if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(lib.Version) || lib.Name != "taskflow_"+lib.Version {
			t.Fatalf("library %q version %q", lib.Name, lib.Version)
		}
		if first, _, _ := strings.Cut(lib.Text, "\n"); first != "#!lua name="+lib.Name {
			t.Fatalf("first line %q", first)
		}
		// Every definition of the prelude and of include/ stands once, at
		// column 0 (the top level); nothing is shaken away.
		def := regexp.MustCompile(`(?m)^local (?:function ([A-Za-z_]\w*)|([A-Za-z_][\w, ]*?)\s*=)`)
		helpers := luaPrelude(cluster).Text()
		for path, src := range luaSources(t) {
			if strings.HasPrefix(path, "lua/include/") {
				helpers += src
			}
		}
		var names []string
		for _, m := range def.FindAllStringSubmatch(helpers, -1) {
			for _, n := range strings.Split(m[1]+m[2], ",") {
				names = append(names, strings.TrimSpace(n))
			}
		}
		if len(names) < 50 {
			t.Fatalf("%d helper definitions found", len(names))
		}
		for _, n := range names {
			re := regexp.MustCompile(`(?m)^local (?:function )?(?:[\w, ]*, )?` + n + `\b`)
			if got := len(re.FindAllString(lib.Text, -1)); got != 1 {
				t.Errorf("%s is defined %d times at the library's top level, want once", n, got)
			}
		}
		// Every script is registered once, with its flags.
		if n := strings.Count(lib.Text, "redis.register_function{"); n != len(sc.all) {
			t.Errorf("%d functions registered, %d scripts", n, len(sc.all))
		}
		for _, s := range sc.all {
			if s.fn != "tf_"+lib.Version+"_"+s.name {
				t.Errorf("%s: function %q", s.name, s.fn)
			}
			head := "redis.register_function{function_name='" + s.fn + "', "
			if !s.writes {
				head += "flags={'no-writes'}, "
			}
			head += "callback=function(KEYS, ARGV)\n"
			if n := strings.Count(lib.Text, head); n != 1 {
				t.Errorf("%s: %d registrations %q", s.name, n, head)
			}
		}
	}
	a, _ := loadScripts(false)
	b, _ := loadScripts(true)
	if a.lib.Version == b.lib.Version {
		t.Error("the cluster's library (SPUBLISH) has the version of the other")
	}
}

// functionList returns the functions of library lib on every master of c
// (one list per master), with their flags: "name flag,flag".
func functionList(t *testing.T, c redis.UniversalClient, lib string) [][]string {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	var out [][]string
	list := func(n redis.Cmdable) error {
		libs, err := n.FunctionList(ctx, redis.FunctionListQuery{LibraryNamePattern: lib}).Result()
		if err != nil {
			return err
		}
		var fns []string
		for _, l := range libs {
			for _, f := range l.Functions {
				fns = append(fns, f.Name+" "+strings.Join(f.Flags, ","))
			}
		}
		sort.Strings(fns)
		mu.Lock()
		out = append(out, fns)
		mu.Unlock()
		return nil
	}
	var err error
	if cc, ok := c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return list(n) })
	} else {
		err = list(c)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// deleteLibrary deletes lib on every master of c, as FUNCTION FLUSH or a
// new master would leave it.
func deleteLibrary(t *testing.T, c redis.UniversalClient, lib string) {
	t.Helper()
	ctx := context.Background()
	del := func(n redis.Cmdable) error {
		if err := n.FunctionDelete(ctx, lib).Err(); err != nil && !strings.Contains(err.Error(), "Library not found") {
			return err // a master the store did not reload on yet holds none
		}
		return nil
	}
	var err error
	if cc, ok := c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return del(n) })
	} else {
		err = del(c)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestLibraryLoads: on the real Redis and the cluster the store loads the
// library (on every master) and calls it; on miniredis, which has no
// Functions, and with withEvalOnly it calls the scripts.
func TestLibraryLoads(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		if err := e.store.LoadScripts(e.ctx); err != nil {
			t.Fatal(err)
		}
		f := must(t, try(e.m.CreateMirrored(e.ctx, seedInput())))
		must(t, try(e.m.Get(e.ctx, f.ID)))
		functions := e.store.scripts.mode.Load() == modeFunctions
		if want := e.b.mini == nil && !e.b.evalOnly; functions != want {
			t.Fatalf("functions: %v, want %v", functions, want)
		}
		if !functions {
			if e.store.scripts.mode.Load() != modeEval {
				t.Fatal("mode undecided after a call")
			}
			return
		}
		lib := e.store.scripts.lib
		for _, fns := range functionList(t, e.client, lib.Name) {
			if len(fns) != len(e.store.scripts.all) {
				t.Fatalf("a master holds %d functions of %s, want %d", len(fns), lib.Name, len(e.store.scripts.all))
			}
			for _, s := range e.store.scripts.all {
				want := s.fn + " "
				if !s.writes {
					want += "no-writes"
				}
				if !slices.Contains(fns, want) {
					t.Fatalf("%q not in %v", want, fns)
				}
			}
		}
	})
}

// TestFunctionNotFoundReloads: the library deleted under a running store
// (FUNCTION DELETE, as FUNCTION FLUSH or a new master leaves it), the
// next call loads it again and applies once; so does a pipelined one.
func TestFunctionNotFoundReloads(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := must(t, try(e.m.CreateMirrored(e.ctx, seedInput())))
		if e.store.scripts.mode.Load() != modeFunctions {
			t.Skip("the store calls scripts here (EVALSHA)")
		}
		lib := e.store.scripts.lib.Name
		events := eventCount(t, e.m, f.ID)
		deleteLibrary(t, e.client, lib)
		g := must(t, try(e.m.UpdateState(e.ctx, f.ID, map[string]int{"x": 1}, "")))
		if g.Revision != f.Revision+1 || eventCount(t, e.m, f.ID) != events+1 {
			t.Fatalf("after the reload: revision %d (from %d), %d events (from %d)", g.Revision, f.Revision, eventCount(t, e.m, f.ID), events)
		}
		for _, fns := range functionList(t, e.client, lib) {
			if len(fns) == 0 && !e.store.cluster {
				t.Fatal("the library was not loaded again")
			}
		}
		// A read (FCALL_RO) and a pipeline (the tick) after another delete.
		deleteLibrary(t, e.client, lib)
		if _, err := e.store.GetStep(e.ctx, f.ID, uuid.New()); !errors.Is(err, ErrNotFound) {
			t.Fatalf("read after the delete: %v", err)
		}
		deleteLibrary(t, e.client, lib)
		w := e.waitingFlow(t, WaitTimer(e.clock.Now().Add(-time.Second)))
		deleteLibrary(t, e.client, lib)
		if rep := e.engine().TickAt(e.ctx, e.clock.Now()); rep.Err != nil || rep.Resumed != 1 {
			t.Fatalf("tick after the delete: %+v", rep)
		}
		if got := must(t, try(e.m.Get(e.ctx, w.ID))); got.Status != StatusRunning || got.Revision != w.Revision+1 {
			t.Fatalf("timer flow after the tick: %s rev %d (from %d)", got.Status, got.Revision, w.Revision)
		}
	})
}

// TestTwoLibraryVersionsSideBySide: a library of another version (another
// release, in a rolling deploy) loads beside the store's; both are
// callable, and deleting one leaves the other.
func TestTwoLibraryVersionsSideBySide(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := must(t, try(e.m.CreateMirrored(e.ctx, seedInput())))
		if e.store.scripts.mode.Load() != modeFunctions {
			t.Skip("the store calls scripts here (EVALSHA)")
		}
		lib := e.store.scripts.lib
		const other = "0123456789ab"
		text := strings.ReplaceAll(lib.Text, lib.Version, other)
		load := func(n redis.Cmdable) error { return n.FunctionLoadReplace(e.ctx, text).Err() }
		var err error
		if cc, ok := e.client.(*redis.ClusterClient); ok {
			err = cc.ForEachMaster(e.ctx, func(ctx context.Context, n *redis.Client) error { return load(n) })
		} else {
			err = load(e.client)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { deleteLibrary(t, e.client, "taskflow_"+other) })
		keys := []string{e.store.keys.flow(f.ID), e.store.keys.flow(f.ID) + ":nostep"}
		for _, fn := range []string{lib.Function("find_step"), "tf_" + other + "_find_step"} {
			v, err := e.client.FCallRO(e.ctx, fn, keys).Result()
			if arr, ok := v.([]any); err != nil || !ok || len(arr) != 0 {
				t.Fatalf("%s: %v %v", fn, v, err)
			}
		}
		must(t, try(e.m.UpdateState(e.ctx, f.ID, map[string]int{"x": 1}, "")))
		if got := len(functionList(t, e.client, "taskflow_"+other)[0]); got != len(e.store.scripts.all) {
			t.Fatalf("the other version holds %d functions", got)
		}
	})
}

// armAfterLoad arms a reply dropper for sc once FUNCTION LOAD was sent:
// the call re-sent after a reload loses its reply.
type armAfterLoad struct {
	d  *replyDropper
	sc *script
}

func (h armAfterLoad) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h armAfterLoad) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if strings.EqualFold(cmd.Name(), "function") {
			h.d.armFor(h.sc)
		}
		return err
	}
}

func (h armAfterLoad) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestLostReplyAfterReloadAppliesOnce: a call that met "function not
// found", was sent again after the reload and lost that reply, applies
// once: go-redis re-sends it and the call memory answers the repeat.
func TestLostReplyAfterReloadAppliesOnce(t *testing.T) {
	for _, b := range backends(t) {
		if b.name != "redis" {
			continue // the one backend whose hooks see the reload's FUNCTION LOAD
		}
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b)
			c, d := lossyClient(t, b)
			store := e.reopenStore(c)
			m := NewManager(store)
			defer m.Close()
			f := must(t, try(m.CreateMirrored(e.ctx, seedInput())))
			if store.scripts.mode.Load() != modeFunctions {
				t.Fatal("the store does not call the library")
			}
			events := eventCount(t, m, f.ID)
			deleteLibrary(t, e.client, store.scripts.lib.Name)
			c.AddHook(armAfterLoad{d: d, sc: store.scripts.updateState})
			n := d.dropped.Load()
			g := must(t, try(m.UpdateState(e.ctx, f.ID, map[string]int{"x": 1}, "")))
			if got := d.dropped.Load() - n; got != 1 {
				t.Fatalf("%d replies dropped, want 1", got)
			}
			if g.Revision != f.Revision+1 || eventCount(t, m, f.ID) != events+1 {
				t.Fatalf("revision %d (from %d), %d events (from %d)", g.Revision, f.Revision, eventCount(t, m, f.ID), events)
			}
		})
	}
}
