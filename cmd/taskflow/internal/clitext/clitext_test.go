package clitext

import (
	"bytes"
	"testing"
)

func TestCell(t *testing.T) {
	for in, want := range map[string]string{"": "-", "a\tb\nc": "a b c", "abcdef": "abcd…", "abcde": "abcde"} {
		if got := Cell(in, 5); got != want {
			t.Errorf("Cell(%q, 5) = %q, want %q", in, got, want)
		}
	}
	if got := Cell("abcdef", 0); got != "abcdef" {
		t.Errorf("Cell with no cut = %q", got)
	}
}

func TestShortToken(t *testing.T) {
	for in, want := range map[string]string{"0123456789": "01234567", "ab": "ab", "": "-", "a\nb": "a b"} {
		if got := ShortToken(in); got != want {
			t.Errorf("ShortToken(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCompactJSON(t *testing.T) {
	for in, want := range map[string]string{"": "-", "{\n  \"a\": 1\n}": `{"a":1}`, "not json": "not json"} {
		if got := CompactJSON([]byte(in)); got != want {
			t.Errorf("CompactJSON(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"redis://127.0.0.1:6379/0":          "redis://127.0.0.1:6379/0",
		"redis://user:secret@host:6379/0":   "redis://user:xxxxx@host:6379/0",
		"://host":                           "(unparsable URL)",
		"rediss://:pw@host:6380?addr=h2:72": "rediss://:xxxxx@host:6380?addr=h2:72",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"redis://127.0.0.1:6379/0": "redis://127.0.0.1:6379/0",
		"":                         "''",
		"a b":                      "'a b'",
		"it's":                     `'it'\''s'`,
		"h?addr=x&addr=y":          "'h?addr=x&addr=y'",
	} {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStatusLine(t *testing.T) {
	var b bytes.Buffer
	l := StatusLine{W: &b}
	l.Update("one")
	l.Update("two")
	l.Done()
	if got, want := b.String(), "\r\033[Kone\r\033[Ktwo\n"; got != want {
		t.Errorf("status line wrote %q, want %q", got, want)
	}
	if IsTerminal(&b) {
		t.Error("a buffer is a terminal")
	}
}
