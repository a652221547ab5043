package fsck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	r := &Report{Problems: []Problem{}}
	if !r.OK() || r.Unrepaired() != 0 {
		t.Fatalf("empty report: OK %v, unrepaired %d", r.OK(), r.Unrepaired())
	}
	r.Problems = append(r.Problems,
		Problem{Kind: OrphanKey, Repaired: true},
		Problem{Kind: BadFlow},
		Problem{Kind: StaleIndexEntry, Repaired: true},
		Problem{Kind: UnknownKey},
	)
	if r.OK() || r.Unrepaired() != 2 {
		t.Fatalf("report: OK %v, unrepaired %d, want false and 2", r.OK(), r.Unrepaired())
	}
}

func TestApply(t *testing.T) {
	if c := Apply(); c.Repair {
		t.Fatal("default config repairs")
	}
	if c := Apply(nil, WithRepair()); !c.Repair {
		t.Fatal("WithRepair did not set Repair")
	}
}

// kindConsts reads kind.go: each Kind constant's name, value and doc.
func kindConsts(t *testing.T) (names []string, values map[string]string, docs map[string]string) {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "kind.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	values, docs = map[string]string{}, map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Kind" {
				t.Fatalf("constant %s is not a Kind", vs.Names[0].Name)
			}
			v, err := strconv.Unquote(vs.Values[0].(*ast.BasicLit).Value)
			if err != nil {
				t.Fatal(err)
			}
			name := vs.Names[0].Name
			names = append(names, name)
			values[name] = v
			docs[name] = vs.Doc.Text()
		}
	}
	return names, values, docs
}

// snake spells a constant's name as its value: EarlyNoTTL is
// early_no_ttl, CancelWaitMissing cancelwait_missing.
func snake(name string) string {
	name = strings.ReplaceAll(name, "TTL", "Ttl")
	name = strings.ReplaceAll(name, "CancelWait", "Cancelwait")
	var b strings.Builder
	for i, r := range name {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// TestKinds: every Kind is unique, spelled as its name, documented on its
// constant and named in the package documentation's guide.
func TestKinds(t *testing.T) {
	names, values, docs := kindConsts(t)
	if len(names) < 30 {
		t.Fatalf("found %d kinds, parsing kind.go went wrong", len(names))
	}
	guide, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, n := range names {
		v := values[n]
		if other, dup := seen[v]; dup {
			t.Errorf("%s and %s share the value %q", n, other, v)
		}
		seen[v] = n
		if snake(n) != v {
			t.Errorf("%s has the value %q, want %q", n, v, snake(n))
		}
		if !strings.HasPrefix(docs[n], n+" ") {
			t.Errorf("%s: doc comment %q does not start with its name", n, docs[n])
		}
		if !strings.Contains(string(guide), " "+n+":") && !strings.Contains(string(guide), " "+n+",") {
			t.Errorf("%s is not in the package documentation's guide", n)
		}
	}
}
