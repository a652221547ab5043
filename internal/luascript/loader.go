package luascript

import (
	"bufio"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// preludeName is the include name, and the path, of the generated tables.
const preludeName = "prelude"

// Loader assembles the scripts of one file system, reading and checking
// each file once. It is not safe for concurrent use.
type Loader struct {
	fsys    fs.FS
	prelude Prelude
	files   map[string]*file
}

// file is one Lua file as the loader reads it: its includes, and (an
// include) its top-level definitions.
type file struct {
	path     string
	text     string
	includes []ref // "prelude" for the generated one
	chunks   []chunk
}

// ref is an include line: the path it names, and where it stands.
type ref struct {
	path string
	line int
}

// chunk is one top-level definition of an include: from a line that
// starts with "local " to the next (its comments go with the one before).
type chunk struct {
	names []string // what it defines
	line  int      // where it starts, from 1
	uses  []string // the names its code mentions
	text  string
}

// NewLoader returns a loader of the scripts in fsys (<name>.lua, helpers
// in include/<name>.lua) whose prelude renders p.
func NewLoader(fsys fs.FS, p Prelude) *Loader {
	return &Loader{fsys: fsys, prelude: p, files: map[string]*file{}}
}

// Scripts returns the names of the scripts in fsys (its top-level .lua
// files, without the extension), sorted.
func Scripts(fsys fs.FS) ([]string, error) {
	paths, err := fs.Glob(fsys, "*.lua")
	if err != nil {
		return nil, err
	}
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = strings.TrimSuffix(p, ".lua")
	}
	sort.Strings(out)
	return out, nil
}

// file reads and checks path (or renders the prelude) once.
func (l *Loader) file(p string) (*file, error) {
	if f := l.files[p]; f != nil {
		return f, nil
	}
	f := &file{path: p}
	if p == preludeName {
		f.text = l.prelude.Text()
	} else {
		body, err := fs.ReadFile(l.fsys, p)
		if err != nil {
			return nil, fmt.Errorf("lua script: %w", err)
		}
		f.text = string(body)
		refs, err := includes(p, f.text)
		if err != nil {
			return nil, err
		}
		f.includes = refs
	}
	include := p == preludeName || strings.HasPrefix(p, "include/")
	if err := checkFile(p, f.text, include); err != nil {
		return nil, err
	}
	if include {
		f.chunks = splitChunks(f.text)
	}
	l.files[p] = f
	return f, nil
}

// Assemble returns <name>.lua with its includes resolved: each include
// once, includes of includes first, and of an include only the top-level
// definitions the script reaches (see the package doc). A file that
// breaks a rule gives an [*Error].
func (l *Loader) Assemble(name string) (string, error) {
	var order []*file // includes first, the script last
	if err := l.collect(name+".lua", map[string]bool{}, &order); err != nil {
		return "", err
	}
	script, incs := order[len(order)-1], order[:len(order)-1]
	if err := checkTwice(incs); err != nil {
		return "", err
	}
	used := map[string]bool{}
	for _, w := range words(script.text) {
		used[w] = true
	}
	kept := map[*chunk]bool{}
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
		b.WriteString("-- " + f.path + "\n")
		for i := range f.chunks {
			if kept[&f.chunks[i]] {
				b.WriteString(f.chunks[i].text)
			}
		}
	}
	b.WriteString("-- " + script.path + "\n")
	b.WriteString(script.text)
	b.WriteString("\n")
	return b.String(), nil
}

// collect appends to order the file p after its includes (includes of
// includes first), each file once over the calls that share done.
func (l *Loader) collect(p string, done map[string]bool, order *[]*file) error {
	// add adds the file p and its includes; from is the include line
	// that names it (none for the script).
	var add func(p string, stack []string, from ref) error
	add = func(p string, stack []string, from ref) error {
		if done[p] {
			return nil
		}
		for _, s := range stack {
			if s == p {
				return &Error{File: from.path, Line: from.line, Rule: RuleInclude,
					Detail: "include cycle " + strings.Join(append(stack, p), " -> ")}
			}
		}
		if from.path != "" && p != preludeName {
			if _, err := fs.Stat(l.fsys, p); err != nil {
				return &Error{File: from.path, Line: from.line, Rule: RuleInclude, Detail: err.Error()}
			}
		}
		f, err := l.file(p)
		if err != nil {
			return err
		}
		for _, inc := range f.includes {
			if err := add(inc.path, append(stack, p), ref{p, inc.line}); err != nil {
				return err
			}
		}
		done[p] = true
		*order = append(*order, f)
		return nil
	}
	return add(p, nil, ref{})
}

// checkTwice checks RuleTwice over the includes of one script.
func checkTwice(incs []*file) error {
	type where struct {
		file string
		line int
	}
	seen := map[string]where{}
	for _, f := range incs {
		for _, c := range f.chunks {
			for _, n := range c.names {
				if w, ok := seen[n]; ok {
					return &Error{File: f.path, Line: c.line, Rule: RuleTwice,
						Detail: fmt.Sprintf("%s, already defined at %s:%d", n, w.file, w.line)}
				}
				seen[n] = where{f.path, c.line}
			}
		}
	}
	return nil
}

func anyUsed(names []string, used map[string]bool) bool {
	for _, n := range names {
		if used[n] {
			return true
		}
	}
	return false
}

// splitChunks splits a checked include's text into its top-level
// definitions; what comes before the first one (the header comment, the
// includes) is left out.
func splitChunks(text string) []chunk {
	var out []chunk
	for i, line := range strings.SplitAfter(text, "\n") {
		if strings.HasPrefix(line, "local ") {
			names, _ := defines(line) // checkFile has checked them
			out = append(out, chunk{names: names, line: i + 1})
		}
		if len(out) > 0 {
			out[len(out)-1].text += line
		}
	}
	for i := range out {
		out[i].uses = words(out[i].text)
	}
	return out
}

// words returns the identifiers of checked Lua source that stand as
// names: outside "--" comments, and not fields (after '.' or ':', not
// after "..").
func words(src string) []string {
	var out []string
	for _, line := range strings.Split(src, "\n") {
		if i := strings.Index(line, "--"); i >= 0 {
			line = line[:i]
		}
		field := false
		for i := 0; i < len(line); {
			c := line[i]
			switch {
			case isWordStart(c):
				j := i + 1
				for j < len(line) && isWordPart(line[j]) {
					j++
				}
				if !field {
					out = append(out, line[i:j])
				}
				field, i = false, j
			case c >= '0' && c <= '9':
				for i < len(line) && isWordPart(line[i]) {
					i++
				}
				field = false
			case c == '.' && strings.HasPrefix(line[i:], ".."):
				for i < len(line) && line[i] == '.' {
					i++ // ".." and "...": what follows is a name
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

// includes returns the paths file p includes, in order.
func includes(p, src string) ([]ref, error) {
	var out []ref
	sc := bufio.NewScanner(strings.NewReader(src))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		rest, ok := strings.CutPrefix(line, "--@include")
		if !ok {
			continue
		}
		name := strings.TrimSpace(rest)
		if name == "" || strings.ContainsAny(name, "/. \t") {
			return nil, &Error{File: p, Line: n, Rule: RuleInclude, Detail: fmt.Sprintf("bad include %q", line)}
		}
		if name != preludeName {
			name = path.Join("include", name+".lua")
		}
		out = append(out, ref{name, n})
	}
	return out, sc.Err()
}
