package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/uuid"
)

func TestHelpOnEveryVerb(t *testing.T) {
	for _, v := range verbs() {
		for _, flag := range []string{"--help", "-h"} {
			r := runCLI(t, v.name, flag).wantCode(t, 0)
			if !strings.Contains(r.stdout, "usage: taskflow "+v.name) || !strings.Contains(r.stdout, "-redis") {
				t.Fatalf("%s %s: stdout %q", v.name, flag, r.stdout)
			}
		}
	}
}

func TestBadUsage(t *testing.T) {
	id := uuid.NewString()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"list", "--bogus"}, "list: unknown flag --bogus"},
		{[]string{"list", "--limt", "3"}, "did you mean --limit?"},
		{[]string{"lsit"}, `unknown verb "lsit"; did you mean "list"?`},
		{[]string{"help", "lsit"}, `unknown verb "lsit"; did you mean "list"?`},
		{[]string{"list", "--redis", "redis://"}, "names no host"},
		{[]string{"list", "--redis", "redis:///0"}, "names no host"},
		{[]string{"list", "--redis", "rediss://:6380"}, "names no host"},
		{[]string{"list", "--redis", "127.0.0.1:6379"}, "did you mean redis://127.0.0.1:6379 ?"},
		{[]string{"watch", "00000000-0000-0000-0000-000000000000"}, "is the nil UUID"},
		{[]string{"show", "00000000-0000-0000-0000-000000000000"}, "is the nil UUID"},
		{[]string{"watch", "--for", "1x"}, "want a duration such as 7d"},
		{[]string{"prune", "--older-than", "0s"}, "the floor is 1h"},
		{[]string{"prune", "--older-than", "59m"}, "pass --force"},
		{[]string{"cancel", uuid.NewString(), "--reason", strings.Repeat("x", 1025)}, "at most 1024 bytes"},
		{[]string{"list", "--limit", "x"}, "invalid value"},
		{[]string{"list", "--limit", "0"}, "--limit 0"},
		{[]string{"list", "--status", "sleeping"}, `unknown status "sleeping"`},
		{[]string{"list", "extra"}, `unexpected argument "extra"`},
		{[]string{"show"}, "missing <id>"},
		{[]string{"show", id, id}, "unexpected argument"},
		{[]string{"show", "xyz"}, `"xyz" is not a flow id (want a UUID)`},
		{[]string{"events", "xyz"}, `"xyz" is not a flow id (want a UUID)`},
		{[]string{"cancel", "xyz"}, `"xyz" is not a flow id (want a UUID)`},
		{[]string{"resume", "not-a-uuid"}, `"not-a-uuid" is not a flow id (want a UUID)`},
		{[]string{"resume"}, "missing <id>"},
		{[]string{"prune"}, "--older-than is required"},
		{[]string{"prune", "--older-than", "7 days"}, "want a duration"},
		{[]string{"run", "--interval", "0s"}, "not positive"},
		{[]string{"tick", "now"}, "unexpected argument"},
		{[]string{"demo", "--flows", "0"}, "--flows 0"},
		{[]string{"list", "--shards", "0"}, "--shards 0"},
		{[]string{"list", "--prefix", "a{b}"}, "brace"},
		{[]string{"list", "--redis", "http://localhost"}, "is not a Redis URL"},
		{[]string{"list", "--redis", "redis://127.0.0.1:7101?addr=bogus"}, "unable to parse addr param: bogus"},
		{[]string{"list", "--redis", "redis://127.0.0.1:7101/3?addr=127.0.0.1:7102"}, "a Redis Cluster has only database 0"},
		{[]string{"fsck", "extra"}, `unexpected argument "extra"`},
		{[]string{"watch", "xyz"}, `"xyz" is not a flow id (want a UUID)`},
		{[]string{"watch", id, id}, "unexpected argument"},
		{[]string{"watch", "--count", "-1"}, "--count -1"},
		{[]string{"watch", "--for", "-1s"}, `--for: invalid value "-1s"`},
	}
	for _, c := range cases {
		r := runCLI(t, c.args...)
		if r.code != 2 {
			t.Errorf("%v: exit status %d, want 2 (stderr %q)", c.args, r.code, r.stderr)
			continue
		}
		r.wantOneLineError(t, c.want)
	}
}

func TestRunInProcess(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
	}{
		{nil, 2}, {[]string{"nope"}, 2}, {[]string{"help"}, 0}, {[]string{"list", "-h"}, 0},
		{[]string{"show", "xyz"}, 2}, {[]string{"list", "--redis", "redis://127.0.0.1:1"}, 1},
	} {
		var out, errOut bytes.Buffer
		if got := run(c.args, &out, &errOut); got != c.code {
			t.Errorf("run(%q) = %d, want %d (stderr %q)", c.args, got, c.code, errOut.String())
		}
	}
}

// The defects an operator hit (issue 12, "The CLI"), each driven through
// the built binary.

func TestHelpVerbVersion(t *testing.T) {
	for _, v := range verbs() {
		r := runCLI(t, "help", v.name).wantCode(t, 0)
		if !strings.HasPrefix(r.stdout, "usage: taskflow "+v.name+" ") || strings.Contains(r.stdout, "verbs:") {
			t.Fatalf("help %s printed:\n%s", v.name, r.stdout)
		}
		if r2 := runCLI(t, v.name, "--help").wantCode(t, 0); r2.stdout != r.stdout {
			t.Fatalf("help %s and %s --help differ", v.name, v.name)
		}
		// One spelling of flags everywhere, and lines of at most 80 columns.
		for _, line := range strings.Split(r.stdout, "\n") {
			if n := utf8.RuneCountInString(line); n > lineWidth {
				t.Errorf("help %s: a line of %d columns: %q", v.name, n, line)
			}
			if f := strings.TrimSpace(line); strings.HasPrefix(f, "-") && !strings.HasPrefix(f, "--") {
				t.Errorf("help %s: flag spelt %q", v.name, f)
			}
		}
	}
	r := runCLI(t, "help").wantCode(t, 0)
	for _, line := range strings.Split(r.stdout, "\n") {
		if utf8.RuneCountInString(line) > lineWidth {
			t.Errorf("help: a line of %d columns: %q", utf8.RuneCountInString(line), line)
		}
	}
	for _, args := range [][]string{{"--version"}, {"version"}} {
		if r := runCLI(t, args...).wantCode(t, 0); !strings.HasPrefix(r.stdout, "taskflow ") {
			t.Fatalf("%v: %q", args, r.stdout)
		}
	}
}

func TestJSONErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"show", "xyz", "--json"}, 2, "is not a flow id"},
		{[]string{"list", "--json", "--bogus"}, 2, "unknown flag --bogus"},
		{[]string{"lsit", "--json"}, 2, "did you mean"},
		{[]string{"list", "--json", "--redis", "redis://127.0.0.1:1"}, 1, "cannot reach Redis"},
	} {
		r := runCLI(t, c.args...).wantCode(t, c.code)
		var e cliError
		if err := json.Unmarshal([]byte(r.stderr), &e); err != nil || e.ExitStatus != c.code || !strings.Contains(e.Error, c.want) {
			t.Fatalf("%v: stderr %q, want a JSON error with %q", c.args, r.stderr, c.want)
		}
	}
}

func TestUsage(t *testing.T) {
	r := runCLI(t).wantCode(t, 2)
	if !strings.Contains(r.stderr, "usage: taskflow <verb>") {
		t.Fatalf("no usage on stderr: %q", r.stderr)
	}
	r = runCLI(t, "frobnicate").wantCode(t, 2)
	if !strings.Contains(r.stderr, `unknown verb "frobnicate"`) {
		t.Fatalf("stderr %q", r.stderr)
	}
	r = runCLI(t, "--help").wantCode(t, 0)
	if !strings.Contains(r.stdout, "usage: taskflow <verb>") {
		t.Fatalf("stdout %q", r.stdout)
	}
}

// A flag's placeholder names what it takes, never its default value
// (`--transport STDIO ... (default stdio)` read as if STDIO were a
// placeholder for something else).
func TestHelpPlaceholdersAreNotDefaults(t *testing.T) {
	flagLine := regexp.MustCompile(`^  --([a-z-]+) ([^ ]+)$`)
	deflt := regexp.MustCompile(`\(default ([^)]*)\)\s*$`)
	for _, v := range verbs() {
		r := runCLI(t, "help", v.name).wantCode(t, 0)
		lines := strings.Split(r.stdout+r.stderr, "\n")
		for i, l := range lines {
			m := flagLine.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			// The flag's description runs to the next flag line.
			desc := ""
			for _, d := range lines[i+1:] {
				if strings.HasPrefix(d, "  --") || strings.TrimSpace(d) == "" {
					break
				}
				desc += " " + strings.TrimSpace(d)
			}
			if d := deflt.FindStringSubmatch(desc); d != nil && strings.EqualFold(d[1], m[2]) {
				t.Errorf("help %s: --%s's placeholder %s is its default", v.name, m[1], m[2])
			}
		}
	}
}
