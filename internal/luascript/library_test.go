package luascript

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestLibrary(t *testing.T) {
	fsys := files(
		"include/math.lua", mathLua,
		"quad.lua", "--@include math\nreturn double(double(tonumber(ARGV[1])))\n",
		"limit.lua", "--@include math\n--@include prelude\nreturn LIMIT + MAX_COUNT\n",
	)
	lib, err := NewLoader(fsys, Prelude{MaxCount: 7}).Library([]LibraryScript{{Name: "quad"}, {Name: "limit", ReadOnly: true}})
	if err != nil {
		t.Fatal(err)
	}
	v := lib.Version
	want := `#!lua name=taskflow_` + v + `
-- taskflow's scripts as one library (internal/luascript): the prelude
-- and the helpers once, then one function per script.
-- prelude
local PUBLISH = 'PUBLISH'
local MAX_COUNT = 7
local ERR = {}
local STATUS = {}
local RECORD = {}
local ALLOWED = {}
-- include/math.lua
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
-- quad.lua
redis.register_function{function_name='tf_` + v + `_quad', callback=function(KEYS, ARGV)
--@include math
return double(double(tonumber(ARGV[1])))
end}
-- limit.lua
redis.register_function{function_name='tf_` + v + `_limit', flags={'no-writes'}, callback=function(KEYS, ARGV)
--@include math
--@include prelude
return LIMIT + MAX_COUNT
end}
`
	if lib.Text != want {
		t.Errorf("library:\n%s\nwant:\n%s", lib.Text, want)
	}
	if lib.Name != "taskflow_"+v || len(v) != 12 || lib.Function("quad") != "tf_"+v+"_quad" {
		t.Errorf("name %q version %q function %q", lib.Name, v, lib.Function("quad"))
	}
	// The version follows the text: the same scripts, the same version;
	// another prelude (or script), another.
	again, _ := NewLoader(fsys, Prelude{MaxCount: 7}).Library([]LibraryScript{{Name: "quad"}, {Name: "limit", ReadOnly: true}})
	other, _ := NewLoader(fsys, Prelude{MaxCount: 8}).Library([]LibraryScript{{Name: "quad"}, {Name: "limit", ReadOnly: true}})
	if again.Text != lib.Text || other.Version == v {
		t.Errorf("versions %s, %s, %s", v, again.Version, other.Version)
	}
}

// TestLibraryRules: the includes of all the scripts share the library's
// top level, so a name defined by two includes is refused even when no
// one script includes both; a script is named once.
func TestLibraryRules(t *testing.T) {
	fsys := files(
		"include/a.lua", "local function f()\n  return 1\nend\n",
		"include/b.lua", "local function f()\n  return 2\nend\n",
		"one.lua", "--@include a\nreturn f()\n",
		"two.lua", "--@include b\nreturn f()\n",
	)
	_, err := NewLoader(fsys, Prelude{}).Library([]LibraryScript{{Name: "one"}, {Name: "two"}})
	var lerr *Error
	if !errors.As(err, &lerr) || lerr.Rule != RuleTwice {
		t.Errorf("two includes defining f: %v", err)
	}
	if _, err := NewLoader(fsys, Prelude{}).Library([]LibraryScript{{Name: "one"}, {Name: "one"}}); err == nil {
		t.Error("a script registered twice")
	}
}

// TestLibraryLimits: a library over Lua 5.1's limits (locals of the main
// chunk, upvalues of one function) fails to assemble, naming the limit.
func TestLibraryLimits(t *testing.T) {
	var inc strings.Builder
	var uses []string
	for i := 0; i < 8; i++ {
		fmt.Fprintf(&inc, "local h%d = %d\n", i, i)
		uses = append(uses, fmt.Sprintf("h%d", i))
	}
	fsys := files(
		"include/many.lua", inc.String(),
		"all.lua", "--@include many\nreturn "+strings.Join(uses, " + ")+"\n",
		"few.lua", "--@include many\nreturn h1\n",
	)
	l := NewLoader(fsys, Prelude{})
	if _, err := l.library([]LibraryScript{{Name: "all"}}, 8, 8); err != nil {
		t.Fatalf("at the limits: %v", err)
	}
	if _, err := l.library([]LibraryScript{{Name: "few"}}, 7, 8); err == nil || !strings.Contains(err.Error(), "8 locals") {
		t.Errorf("over the locals: %v", err)
	}
	if _, err := l.library([]LibraryScript{{Name: "all"}}, 8, 7); err == nil || !strings.Contains(err.Error(), "all.lua reaches 8") || !strings.Contains(err.Error(), "upvalues") {
		t.Errorf("over the upvalues: %v", err)
	}
}

// TestTheRealLibraryIsWithinTheLimits: the real files make a library,
// with room left under Lua 5.1's limits.
func TestTheRealLibraryIsWithinTheLimits(t *testing.T) {
	fsys := os.DirFS("../../lua")
	names, err := Scripts(fsys)
	if err != nil {
		t.Fatal(err)
	}
	var scripts []LibraryScript
	for _, n := range names {
		scripts = append(scripts, LibraryScript{Name: n})
	}
	l := NewLoader(fsys, Prelude{})
	if _, err := l.library(scripts, maxLocals/2, maxUpvalues*2/3); err != nil {
		t.Errorf("less than a third of the room left: %v", err)
	}
}
