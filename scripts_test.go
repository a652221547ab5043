package taskflow

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
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
