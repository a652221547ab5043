package taskflow

import (
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"sort"
	"strings"
	"testing"
)

// The house's measures, kept from growing back: how many names the root
// package shows (go doc's index), how many files it has, and how many of
// its files' dependencies run against the grain.
//
// A file depends on another when it names something the other declares:
// a package-level function, type, variable or constant, a method or a
// field. Files are then laid out in an order that
// keeps as many dependencies as it can pointing from a file to one laid
// out before it (the greedy order of Eades, Lin and Smyth: files only
// used go first, files only using last, then whichever is most used than
// using); a dependency on a file laid out after it runs upward.
const (
	// 200 after the house (issue 21); the flows of flows (issue 23)
	// added 12: StartChild, StartChildren, ListChildren, ChildInput,
	// Child, ParentClosePolicy and its 3 values, Join, WaitChildren,
	// WaitKindChildren; find and explain (issue 25) 3: Manager.Explain,
	// Explanation, Manager.Stuck; schedules (issue 26) 21: Schedule,
	// ScheduleInput, ScheduleFire, OverlapPolicy and its 4 values,
	// CatchUpPolicy and its 3 values, Manager.CreateSchedule,
	// UpdateSchedule, PauseSchedule, ResumeSchedule, DeleteSchedule,
	// GetSchedule, ListSchedules, TriggerSchedule, BackfillSchedule, and
	// one file, schedules.go; search attributes and Find (issue 25) 4:
	// Manager.Find, Filter, Manager.SetAttributes, EventAttributesSet;
	// and their file, find.go; fair capacity (issue 24) 7: KeyLimit,
	// KeyUsage, Manager.SetKeyLimit, DeleteKeyLimit, KeyLimits,
	// SetConcurrency, EventConcurrencySet, and its file, gate.go. The
	// writes, the claim, the children's relay, the tick and Verify all
	// call gate.go, so the layout puts it under the Manager whose methods
	// it defines, and shifts limits.go above mutation.go and scripts.go:
	// 27 dependencies run upward, not 24.
	maxRootExported = 247
	maxRootFiles    = 33
	maxUpward       = 27
)

// rootFiles parses the root package's non-test files.
func rootFiles(t *testing.T) (*token.FileSet, map[string]*ast.File) {
	t.Helper()
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]*ast.File{}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, n, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files[n] = f
	}
	return fset, files
}

// exportedNames lists the root's exported identifiers: top-level names
// and the exported methods of exported types, as go doc indexes them.
func exportedNames(files map[string]*ast.File) []string {
	var out []string
	for _, f := range files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				if d.Recv == nil {
					out = append(out, d.Name.Name)
					continue
				}
				if r := recvName(d); ast.IsExported(r) {
					out = append(out, r+"."+d.Name.Name)
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							out = append(out, s.Name.Name)
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								out = append(out, n.Name)
							}
						}
					}
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func recvName(d *ast.FuncDecl) string {
	t := d.Recv.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	if ix, ok := t.(*ast.IndexExpr); ok {
		t = ix.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// fileDeps returns, for each file, the set of other files it depends on:
// the files declaring what it names (a package-level name, a method, a
// field), resolved by type-checking the package from source.
func fileDeps(t *testing.T, fset *token.FileSet, files map[string]*ast.File) map[string]map[string]bool {
	t.Helper()
	var list []*ast.File
	for _, f := range files {
		list = append(list, f)
	}
	conf := types.Config{Importer: importer.ForCompiler(fset, "source", nil)}
	info := &types.Info{Uses: map[*ast.Ident]types.Object{}}
	pkg, err := conf.Check("github.com/taskflow-dev/taskflow", fset, list, info)
	if err != nil {
		t.Fatalf("type-checking the root: %v", err)
	}
	deps := map[string]map[string]bool{}
	for name := range files {
		deps[name] = map[string]bool{}
	}
	for id, obj := range info.Uses {
		if obj == nil || obj.Pkg() != pkg {
			continue
		}
		if v, ok := obj.(*types.Var); ok && !v.IsField() && obj.Parent() != pkg.Scope() {
			continue // a local variable or parameter
		}
		if obj.Parent() != nil && obj.Parent() != pkg.Scope() {
			continue // a local type or constant
		}
		from := fset.Position(id.Pos()).Filename
		to := fset.Position(obj.Pos()).Filename
		if from != to && deps[from] != nil && deps[to] != nil {
			deps[from][to] = true
		}
	}
	return deps
}

// layOut orders the files (the greedy heuristic above) and returns the
// order and the dependencies that run upward in it.
func layOut(deps map[string]map[string]bool) (order []string, upward [][2]string) {
	in := map[string]map[string]bool{}
	left := map[string]bool{}
	for f, ds := range deps {
		left[f] = true
		for d := range ds {
			if in[d] == nil {
				in[d] = map[string]bool{}
			}
			in[d][f] = true
		}
	}
	count := func(m map[string]bool) int {
		n := 0
		for k := range m {
			if left[k] {
				n++
			}
		}
		return n
	}
	sorted := func() []string {
		var s []string
		for f := range left {
			s = append(s, f)
		}
		sort.Strings(s)
		return s
	}
	var head, tail []string // head: used by what follows; tail: reversed
	for len(left) > 0 {
		progress := true
		for progress {
			progress = false
			for _, f := range sorted() {
				if count(deps[f]) == 0 { // uses nothing left: a bottom layer
					head = append(head, f)
					delete(left, f)
					progress = true
				} else if count(in[f]) == 0 { // used by nothing left: a top layer
					tail = append(tail, f)
					delete(left, f)
					progress = true
				}
			}
		}
		if len(left) == 0 {
			break
		}
		best, bestScore := "", 0
		for _, f := range sorted() {
			if s := count(in[f]) - count(deps[f]); best == "" || s > bestScore {
				best, bestScore = f, s
			}
		}
		head = append(head, best)
		delete(left, best)
	}
	order = head
	for i := len(tail) - 1; i >= 0; i-- {
		order = append(order, tail[i])
	}
	pos := map[string]int{}
	for i, f := range order {
		pos[f] = i
	}
	for _, f := range order {
		var ds []string
		for d := range deps[f] {
			ds = append(ds, d)
		}
		sort.Strings(ds)
		for _, d := range ds {
			if pos[d] > pos[f] {
				upward = append(upward, [2]string{f, d})
			}
		}
	}
	return order, upward
}

func TestPublicFaceStaysThin(t *testing.T) {
	fset, files := rootFiles(t)
	names := exportedNames(files)
	deps := fileDeps(t, fset, files)
	total := 0
	for _, ds := range deps {
		total += len(ds)
	}
	order, upward := layOut(deps)
	t.Logf("order, bottom first: %s", strings.Join(order, " "))
	t.Logf("root: %d files, %d exported names, %d file dependencies, %d upward", len(files), len(names), total, len(upward))
	for _, u := range upward {
		t.Logf("upward: %s -> %s", u[0], u[1])
	}
	if len(names) > maxRootExported {
		t.Errorf("the root exports %d names, more than %d: put what users never call under internal/ or in its own package", len(names), maxRootExported)
	}
	if len(files) > maxRootFiles {
		t.Errorf("the root has %d files, more than %d", len(files), maxRootFiles)
	}
	for _, n := range names {
		if strings.HasPrefix(n, "Tool") {
			t.Errorf("root exports %s: the agent tool's names belong to package agenttool", n)
		}
	}
	if len(upward) > maxUpward {
		t.Errorf("%d file dependencies run upward, more than %d", len(upward), maxUpward)
	}
}
