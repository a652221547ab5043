package luascript

import (
	"errors"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
)

// files builds a file system of Lua files from path, text pairs.
func files(pairs ...string) fstest.MapFS {
	m := fstest.MapFS{}
	for i := 0; i+1 < len(pairs); i += 2 {
		m[pairs[i]] = &fstest.MapFile{Data: []byte(pairs[i+1])}
	}
	return m
}

// mathLua is an include of four helpers: double uses twice, quad uses
// double; unused is used by none.
const mathLua = `-- math.lua: small helpers.
--@include prelude

-- twice doubles.
local function twice(x)
  return x * 2
end

-- double is twice.
local function double(x)
  return twice(x)
end

local LIMIT, FLOOR = 10, 1

local function unused()
  return 'unused'
end
`

func TestAssemble(t *testing.T) {
	fsys := files(
		"include/math.lua", mathLua,
		"quad.lua", "--@include math\nreturn double(double(tonumber(ARGV[1])))\n",
	)
	got, err := NewLoader(fsys, Prelude{MaxCount: 7}).Assemble("quad")
	if err != nil {
		t.Fatal(err)
	}
	want := `-- prelude
-- include/math.lua
local function twice(x)
  return x * 2
end

-- double is twice.
local function double(x)
  return twice(x)
end

-- quad.lua
--@include math
return double(double(tonumber(ARGV[1])))

`
	if got != want {
		t.Errorf("assembled:\n%s\nwant:\n%s", got, want)
	}
}

// TestShakeKeepsWhatIsReached: a definition is kept when the script or a
// kept definition names it, through any number of steps and includes;
// the others are dropped.
func TestShakeKeepsWhatIsReached(t *testing.T) {
	fsys := files(
		"include/a.lua", "--@include b\nlocal function a1() return b1() end\nlocal function a2() return 2 end\n",
		"include/b.lua", "local function b1() return c1 end\nlocal function b2() return a2 end\nlocal c1 = 1\n",
		"one.lua", "--@include a\nreturn a1()\n",
		"field.lua", "--@include a\n--@include prelude\nreturn x.a1 + y:a2() .. ERR.b1 -- a2 in a comment\n",
		"concat.lua", "--@include b\nreturn 'x' .. c1\n",
		"prelude.lua", "--@include prelude\nreturn MAX_COUNT\n",
	)
	l := NewLoader(fsys, Prelude{Codes: []string{"NOPE"}})
	for _, c := range []struct {
		script string
		want   []string
	}{
		{"one", []string{"b1", "c1", "a1"}},
		{"field", []string{"ERR"}},
		{"concat", []string{"c1"}},
		{"prelude", []string{"MAX_COUNT"}},
	} {
		src, err := l.Assemble(c.script)
		if err != nil {
			t.Fatalf("%s: %v", c.script, err)
		}
		if got := definedNames(src); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s keeps %v, want %v", c.script, got, c.want)
		}
	}
}

// definedNames returns the names of src's top-level definitions, in order.
func definedNames(src string) []string {
	var out []string
	for _, line := range strings.Split(src, "\n") {
		if strings.HasPrefix(line, "local ") {
			names, _ := defines(line)
			out = append(out, names...)
		}
	}
	return out
}

// TestIncludesAreResolvedOnce: a file included by two includes comes once,
// before both.
func TestIncludesAreResolvedOnce(t *testing.T) {
	fsys := files(
		"include/base.lua", "local B = 1\n",
		"include/x.lua", "--@include base\nlocal X = B\n",
		"include/y.lua", "--@include base\nlocal Y = B\n",
		"s.lua", "--@include x\n--@include y\nreturn X + Y\n",
	)
	got, err := NewLoader(fsys, Prelude{}).Assemble("s")
	if err != nil {
		t.Fatal(err)
	}
	want := "-- include/base.lua\nlocal B = 1\n-- include/x.lua\nlocal X = B\n-- include/y.lua\nlocal Y = B\n-- s.lua\n--@include x\n--@include y\nreturn X + Y\n\n"
	if got != want {
		t.Errorf("assembled:\n%s\nwant:\n%s", got, want)
	}
}

// TestRulesAreChecked: a file breaking a rule does not load, and the
// error names the file, the line and the rule.
func TestRulesAreChecked(t *testing.T) {
	for _, c := range []struct {
		name   string
		inc    string // include/h.lua
		script string // s.lua, "--@include h\nreturn f()\n" when empty
		line   int
		file   string // include/h.lua when empty
		rule   Rule
	}{
		{"statement at the top", "local function f() end\nredis.call('DEL', 'x')\n", "", 2, "", RuleTopLevel},
		{"global function", "function f() end\n", "", 1, "", RuleTopLevel},
		{"indented definition", "local function f() end\n  local g = 1\n", "", 2, "", RuleTopLevel},
		{"tab after local", "local\tfunction f() end\n", "", 1, "", RuleTopLevel},
		{"code in the header", "--@include prelude\nx = 1\nlocal function f() end\n", "", 2, "", RuleTopLevel},
		{"continued expression", "local X = 1 +\n  2\nlocal function f() return X end\n", "", 2, "", RuleTopLevel},
		{"local at column 0 in a body", "local function f()\nlocal x = 1\n  return x\nend\n", "", 2, "", RuleNested},
		{"local at column 0 in a table", "local T = {\nlocal_x = 1,\n}\nlocal function f() end\n", "", 0, "", ""},
		{"two on a line", "local function f() end local g = 1\n", "", 1, "", RuleOnePerLine},
		{"two with a semicolon", "local a = 1; local f = 2\n", "", 1, "", RuleOnePerLine},
		{"attribute", "local f <const> = 1\n", "", 1, "", RuleName},
		{"field function", "local function t.f() end\n", "", 1, "", RuleName},
		{"long comment", "--[[ notes\nlocal x = 1\n]]\nlocal function f() end\n", "", 1, "", RuleLongBracket},
		{"long comment with level", "local function f() end --[==[ x ]==]\n", "", 1, "", RuleLongBracket},
		{"long string", "local S = [[\nlocal f = 1\n]]\n", "", 1, "", RuleLongBracket},
		{"long string in a script", "local function f() end\n", "--@include h\nreturn f([=[x]=])\n", 2, "s.lua", RuleLongBracket},
		{"dashes in a string", "local function f() return 'a--b' end\n", "", 1, "", RuleDashes},
		{"dashes in a script's string", "local function f() end\n", "--@include h\nreturn f(\"--\")\n", 2, "s.lua", RuleDashes},
		{"string past the line", "local function f()\n  return 'a\\\nb'\nend\n", "", 2, "", RuleString},
		{"unclosed string", "local function f() return 'a end\n", "", 1, "", RuleString},
		{"unclosed block", "local function f()\n  if x then\n  return 1\nend\n", "", 4, "", RuleBalance},
		{"extra end", "local function f() end\n", "--@include h\nreturn f()\nend\n", 3, "s.lua", RuleBalance},
		{"unclosed table", "local T = {\n  a = 1,\n", "", 2, "", RuleBalance},
		{"include with a path", "local function f() end\n", "--@include ../h\nreturn f()\n", 1, "s.lua", RuleInclude},
		{"include with the extension", "local function f() end\n", "--@include h.lua\nreturn f()\n", 1, "s.lua", RuleInclude},
		{"empty include", "local function f() end\n", "--@include \nreturn f()\n", 1, "s.lua", RuleInclude},
		{"missing include", "local function f() end\n", "\n--@include nothere\nreturn f()\n", 2, "s.lua", RuleInclude},
		{"include cycle", "--@include h\nlocal function f() end\n", "", 1, "", RuleInclude},
		{"twice in one include", "local function f() end\nlocal function f() end\n", "", 2, "", RuleTwice},
		{"twice in two includes", "--@include g\nlocal function f() end\n", "", 2, "", RuleTwice},
		{"prelude name again", "--@include prelude\nlocal ERR = {}\nlocal function f() end\n", "", 2, "", RuleTwice},
	} {
		t.Run(c.name, func(t *testing.T) {
			script := c.script
			if script == "" {
				script = "--@include h\nreturn f()\n"
			}
			fsys := files("include/h.lua", c.inc, "include/g.lua", "local function f() end\n", "s.lua", script)
			_, err := NewLoader(fsys, Prelude{}).Assemble("s")
			if c.rule == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want a %q error", err, c.rule)
			}
			file := c.file
			if file == "" {
				file = "include/h.lua"
			}
			if e.Rule != c.rule || e.File != file || e.Line != c.line {
				t.Errorf("got %s:%d %q, want %s:%d %q", e.File, e.Line, e.Rule, file, c.line, c.rule)
			}
			if msg := err.Error(); !strings.Contains(msg, file) || !strings.Contains(msg, string(c.rule)) {
				t.Errorf("the message %q does not name the file and the rule", msg)
			}
		})
	}
}

// TestRulesAllowWhatTheScriptsWrite: forms the rules must not refuse.
func TestRulesAllowWhatTheScriptsWrite(t *testing.T) {
	inc := `-- h.lua: a header with --[ brackets and "--" and 'quotes'.
--@include prelude

-- f returns things.
local function f(t, ...)
  local args = {...}
  local s = 'it\'s' .. "a \"quoted\" - dash" .. t[args[1]] .. '\\'
  while #args > 0 do
    repeat
      table.remove(args)
    until true
  end
  for i = 1, 1e-3 + 0x10 do
    if i then s = s .. i elseif s then s = nil else s = 1 end
  end
  local g = function(x) return x end
  return g(s), {[1] = 2, k = {}}
end
local A, B = 1, 2
local C
local D = {
  x = 1,
}
`
	fsys := files("include/h.lua", inc, "s.lua", "--@include h\nreturn f(A, B, C, D)\n")
	if _, err := NewLoader(fsys, Prelude{}).Assemble("s"); err != nil {
		t.Fatal(err)
	}
}

// TestWords: what counts as a name's use.
func TestWords(t *testing.T) {
	got := words("local x = a.b + c:d() .. e ... f -- g\nh . i, j[k]")
	want := []string{"local", "x", "a", "c", "e", "f", "h", "j", "k"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("words %v, want %v", got, want)
	}
}

// TestTheRealFilesFollowTheRules: every file of lua/ passes the checks,
// and every script assembles (with an empty prelude: the root's tests
// assemble them with the real one).
func TestTheRealFilesFollowTheRules(t *testing.T) {
	fsys := os.DirFS("../../lua")
	paths, err := fs.Glob(fsys, "include/*.lua")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkFile(p, string(b), true); err != nil {
			t.Error(err)
		}
	}
	names, err := Scripts(fsys)
	if err != nil || len(names) == 0 {
		t.Fatalf("scripts %v, %v", names, err)
	}
	l := NewLoader(fsys, Prelude{})
	for _, n := range names {
		if _, err := l.Assemble(n); err != nil {
			t.Error(err)
		}
	}
}
