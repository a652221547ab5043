package luascript

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
)

// Lua 5.1's limits that a library's text could reach: the locals active
// at once in one function (LUAI_MAXVARS; the library's main chunk holds
// every helper and table of the prelude as one), and the upvalues of one
// function (LUAI_MAXUPVALUES; a script's body, as a function of the
// library, reaches each helper it names as one).
const (
	maxLocals   = 200
	maxUpvalues = 60
)

// versionPlaceholder stands for the version in the text that is hashed
// to make it; no Lua file holds it (it is not a name Lua reads).
const versionPlaceholder = "@VERSION@"

// LibraryScript is one script of a library: its name (its file without
// ".lua") and whether it only reads (its function gets the no-writes
// flag, so FCALL_RO may call it, on a replica too).
type LibraryScript struct {
	Name     string
	ReadOnly bool
}

// Library is every script of a file system as one Redis Functions
// library (FUNCTION LOAD). Its text starts with
//
//	#!lua name=taskflow_<version>
//
// then holds the prelude and every include once, each definition in
// full (no shaking: they are defined once per load, not once per call),
// then registers each script's text as the body of a function
// tf_<version>_<script>(KEYS, ARGV). The version is a short hash of the
// text, so two releases whose scripts differ load side by side (function
// names are global in Redis: they carry the version too) and one whose
// scripts do not differ shares the other's library.
type Library struct {
	Name    string // taskflow_<version>
	Version string // 12 hex digits
	Text    string
}

// Function returns the name of script's function in the library.
func (lib *Library) Function(script string) string {
	return functionName(lib.Version, script)
}

func functionName(version, script string) string { return "tf_" + version + "_" + script }

// Library assembles scripts into one library. A file that breaks a rule
// gives an [*Error] (RuleTwice holds over all the includes of all the
// scripts: they share one top level); a library over Lua 5.1's limits
// (200 locals in its main chunk, 60 upvalues in one function) gives an
// error naming the limit and what reaches it.
func (l *Loader) Library(scripts []LibraryScript) (*Library, error) {
	return l.library(scripts, maxLocals, maxUpvalues)
}

func (l *Loader) library(scripts []LibraryScript, locals, upvalues int) (*Library, error) {
	done := map[string]bool{}
	var incs []*file // includes of includes first
	bodies := make([]*file, len(scripts))
	seen := map[string]bool{}
	for i, sc := range scripts {
		if seen[sc.Name] || !isName(sc.Name) {
			return nil, fmt.Errorf("lua library: script name %q is repeated or not a Lua name", sc.Name)
		}
		seen[sc.Name] = true
		var order []*file
		if err := l.collect(sc.Name+".lua", done, &order); err != nil {
			return nil, err
		}
		if len(order) == 0 || order[len(order)-1].path != sc.Name+".lua" {
			return nil, fmt.Errorf("lua library: %s.lua is included by another script", sc.Name)
		}
		incs = append(incs, order[:len(order)-1]...)
		bodies[i] = order[len(order)-1]
	}
	if err := checkTwice(incs); err != nil {
		return nil, err
	}
	top := map[string]bool{}
	for _, f := range incs {
		for _, c := range f.chunks {
			for _, n := range c.names {
				top[n] = true
			}
		}
	}
	if len(top) > locals {
		return nil, fmt.Errorf("lua library: its main chunk would define %d locals (the prelude and every helper of include/), over Lua 5.1's limit of %d: merge helpers or move tables into one", len(top), locals)
	}
	reach := func(text string) []string {
		set := map[string]bool{}
		for _, w := range words(text) {
			if top[w] {
				set[w] = true
			}
		}
		out := make([]string, 0, len(set))
		for w := range set {
			out = append(out, w)
		}
		sort.Strings(out)
		return out
	}
	for _, f := range incs {
		for _, c := range f.chunks {
			if r := reach(c.text); len(r) > upvalues {
				return nil, fmt.Errorf("lua library: %s:%d reaches %d helpers and tables, over Lua 5.1's limit of %d upvalues per function", f.path, c.line, len(r), upvalues)
			}
		}
	}
	for _, f := range bodies {
		if r := reach(f.text); len(r) > upvalues {
			return nil, fmt.Errorf("lua library: %s reaches %d helpers and tables (%s), over Lua 5.1's limit of %d upvalues per function: split the script or merge helpers", f.path, len(r), strings.Join(r, ", "), upvalues)
		}
	}

	var b strings.Builder
	b.WriteString("#!lua name=taskflow_" + versionPlaceholder + "\n")
	b.WriteString("-- taskflow's scripts as one library (internal/luascript): the prelude\n")
	b.WriteString("-- and the helpers once, then one function per script.\n")
	for _, f := range incs {
		b.WriteString("-- " + f.path + "\n")
		for _, c := range f.chunks {
			b.WriteString(c.text)
		}
	}
	for i, sc := range scripts {
		fmt.Fprintf(&b, "-- %s\nredis.register_function{function_name='%s', ", bodies[i].path, functionName(versionPlaceholder, sc.Name))
		if sc.ReadOnly {
			b.WriteString("flags={'no-writes'}, ")
		}
		b.WriteString("callback=function(KEYS, ARGV)\n")
		b.WriteString(bodies[i].text)
		if !strings.HasSuffix(bodies[i].text, "\n") {
			b.WriteString("\n")
		}
		b.WriteString("end}\n")
	}
	sum := sha1.Sum([]byte(b.String()))
	version := hex.EncodeToString(sum[:6])
	return &Library{
		Name:    "taskflow_" + version,
		Version: version,
		Text:    strings.ReplaceAll(b.String(), versionPlaceholder, version),
	}, nil
}
