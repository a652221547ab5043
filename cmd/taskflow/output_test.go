package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/clitext"
)

func TestPaintOnlyOnATerminal(t *testing.T) {
	var buf bytes.Buffer
	if got := paint(&buf, red, "x"); got != "x" {
		t.Fatalf("paint on a buffer = %q", got)
	}
	// A file that is not a terminal gets no colour either.
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := paint(f, red, "x"); got != "x" {
		t.Fatalf("paint on a file = %q", got)
	}
}

func TestWrapText(t *testing.T) {
	in := strings.Repeat("word ", 40) + "\n\n  kept   as it is\nnext paragraph"
	out := wrapText(in, 30, "  ")
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if utf8.RuneCountInString(line) > 30 {
			t.Fatalf("line of %d columns: %q", utf8.RuneCountInString(line), line)
		}
	}
	if !strings.Contains(out, "\n    kept   as it is\n") || !strings.HasSuffix(out, "  next paragraph\n") {
		t.Fatalf("wrapped:\n%s", out)
	}
}

func TestFmtDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 90 * time.Second: "1m30s", 36 * time.Hour: "1d12h", 7 * 24 * time.Hour: "7d",
		time.Hour: "1h", 10 * time.Second: "10s", 30 * time.Minute: "30m", 24*time.Hour + 90*time.Second: "1d1m30s",
	} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%s) = %q, want %q", d, got, want)
		}
		if back, err := parseDuration(fmtDuration(d)); err != nil || back != d {
			t.Errorf("parseDuration(fmtDuration(%s)) = %s, %v", d, back, err)
		}
	}
}

// TestColourOnATerminal runs the binary on a pseudo-terminal (util-linux
// script): show colours a finished flow's status there, and not with
// NO_COLOR set.
func TestColourOnATerminal(t *testing.T) {
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("script (util-linux) not installed")
	}
	eachBackend(t, func(t *testing.T, e *testEnv) {
		f := e.running(ownerA, "colour me")
		if _, err := e.m.Finish(context.Background(), f.ID, nil); err != nil {
			t.Fatal(err)
		}
		onTTY := func(env ...string) string {
			line := strings.Join([]string{binPath, "show", f.ID.String(), "--redis", clitext.ShellQuote(e.url), "--prefix", e.prefix}, " ")
			cmd := exec.Command("script", "-qec", line, "/dev/null")
			cmd.Env = append(cliEnv(), env...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", line, err, out)
			}
			return string(out)
		}
		if out := onTTY("TERM=xterm"); !strings.Contains(out, "\033[32mfinished\033[0m") {
			t.Fatalf("no colour on a terminal:\n%q", out)
		}
		if out := onTTY("TERM=xterm", "NO_COLOR=1"); strings.Contains(out, "\033[") {
			t.Fatalf("colour despite NO_COLOR:\n%q", out)
		}
	})
}

// --json prints text as written: '<', '>' and '&' in a goal, the state or
// an event payload are not HTML-escaped (\u003c, \u003e, \u0026).
func TestJSONOutputIsNotHTMLEscaped(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		f := e.running(ownerA, "fetch <b>bold</b> & more")
		if _, err := e.m.UpdateState(context.Background(), f.ID, map[string]any{"url": "https://x.example/?a=1&b=2"}, ""); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"show", f.ID.String()}, {"events", f.ID.String()}, {"list"}} {
			r := e.run(append(args, "--json")...).wantCode(t, 0)
			if strings.Contains(r.stdout, `\u00`) {
				t.Errorf("%v --json escapes: %s", args, r.stdout)
			}
		}
		show := e.run("show", f.ID.String(), "--json").stdout
		for _, want := range []string{"fetch <b>bold</b> & more", "https://x.example/?a=1&b=2"} {
			if !strings.Contains(show, want) {
				t.Errorf("show --json lacks %q:\n%s", want, show)
			}
		}
	})
}
