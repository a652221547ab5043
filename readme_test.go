package taskflow

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readmeBlocks returns the README's fenced blocks of a language, in order.
func readmeBlocks(t *testing.T, lang string) []string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile("(?s)```"+lang+"\n(.*?)```").FindAllSubmatch(b, -1) {
		out = append(out, string(m[1]))
	}
	return out
}

// exampleBodies returns the body of every Example function in the
// example*_test.go files of the repository (every module), dedented one
// tab, by "file: name".
func exampleBodies(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), "example") || !strings.HasSuffix(d.Name(), "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || !strings.HasPrefix(fn.Name.Name, "Example") || fn.Body == nil {
				continue
			}
			body := src[fset.Position(fn.Body.Lbrace).Offset+1 : fset.Position(fn.Body.Rbrace).Offset]
			var lines []string
			for _, l := range strings.Split(strings.Trim(string(body), "\n"), "\n") {
				lines = append(lines, strings.TrimPrefix(l, "\t"))
			}
			out[path+": "+fn.Name.Name] = strings.Join(lines, "\n") + "\n"
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Every Go snippet of the README compiles as it reads: the Quickstart is
// a whole program (TestReadmeQuickstartBuilds builds it), every other
// snippet is the whole body of an example that its module's tests
// compile.
func TestReadmeGoSnippets(t *testing.T) {
	bodies := exampleBodies(t)
	programs := 0
	for i, block := range readmeBlocks(t, "go") {
		if strings.HasPrefix(block, "package main\n") {
			programs++
			continue
		}
		found := false
		for _, body := range bodies {
			if body == block {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("README Go snippet %d is the body of no example (example*_test.go); make it one:\n%s", i+1, block)
		}
	}
	if programs != 1 {
		t.Errorf("%d whole programs in the README, want 1 (the Quickstart)", programs)
	}
}

// The Install section's steps, run as written (the clone's path for
// ../taskflow) in a new module whose main.go is the Quickstart, give a
// program that builds. The library's dependencies come from the module
// cache the tests were built with (the proxy only for what it lacks).
func TestReadmeQuickstartBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module")
	}
	var quickstart string
	for _, b := range readmeBlocks(t, "go") {
		if strings.HasPrefix(b, "package main\n") {
			quickstart = b
		}
	}
	var steps []string
	for _, b := range readmeBlocks(t, "sh") {
		if strings.Contains(b, "go mod edit -replace=github.com/taskflow-dev/taskflow") {
			for _, l := range strings.Split(b, "\n") {
				if strings.HasPrefix(l, "go mod ") || strings.HasPrefix(l, "go get ") {
					steps = append(steps, strings.TrimSpace(strings.SplitN(l, "#", 2)[0]))
				}
			}
		}
	}
	if quickstart == "" || len(steps) != 2 {
		t.Fatalf("no Quickstart program or Install steps (%q) in the README", steps)
	}
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(quickstart), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir, cmd.Env = dir, env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
	}
	run("go", "mod", "init", "example.com/quickstart")
	for _, step := range steps {
		run(strings.Fields(strings.ReplaceAll(step, "../taskflow", root))...)
	}
	run("go", "build", "-o", filepath.Join(dir, "quickstart"), ".")
}

// No module's go.mod carries a replace: go.work ties the clone's modules
// together for development, and a replace in a published go.mod would
// make `go install …/cmd/taskflow@version` impossible.
func TestModulesCarryNoReplace(t *testing.T) {
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "go.mod" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "replace") {
				t.Errorf("%s: %s (go.work covers development)", path, l)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The README names every audit event kind the package defines (the Event*
// string constants), so an operator reading `taskflow events` finds each.
func TestReadmeNamesEveryEventKind(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	kinds := 0
	for _, f := range pkgs["taskflow"].Files {
		ast.Inspect(f, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Event") || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				kinds++
				if kind := strings.Trim(lit.Value, `"`); !bytes.Contains(readme, []byte("`"+kind+"`")) {
					t.Errorf("the README does not name the event kind `%s` (%s)", kind, name.Name)
				}
			}
			return true
		})
	}
	if kinds < 10 {
		t.Fatalf("found only %d event kinds", kinds)
	}
}
