// Package clitext writes the CLI's text for people: aligned tables, table
// cells cut and cleaned of control characters, JSON on one line, lease
// tokens shortened, URLs with their password hidden, words quoted for a
// shell, and a status line rewritten in place on a terminal. The verbs in
// package main and the demo (internal/demo) share it, so a value looks
// the same in every verb's output.
package clitext

import (
	"bytes"
	"encoding/json"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"
)

// NewTable returns a writer that aligns tab-separated columns, two spaces
// apart. Call Flush when the table is written.
func NewTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// Cell makes s safe for one table cell: control characters (tabs,
// newlines, escapes) become spaces, and it is cut to max runes with an
// ellipsis (max <= 0: no cut). An empty cell is "-".
func Cell(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if max > 0 && utf8.RuneCountInString(s) > max {
		r := []rune(s)
		s = string(r[:max-1]) + "…"
	}
	if s == "" {
		return "-"
	}
	return s
}

// CompactJSON returns raw on one line ("-" when empty; raw as it is when
// it is not JSON).
func CompactJSON(raw []byte) string {
	if len(raw) == 0 {
		return "-"
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	return buf.String()
}

// ShortToken shows the first 8 characters of a lease token, enough to
// tell the leases of one flow apart.
func ShortToken(t string) string {
	if len(t) > 8 {
		return t[:8]
	}
	return Cell(t, 0)
}

// RedactURL hides a password in a URL meant for display.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if _, has := u.User.Password(); !has {
		return raw
	}
	return u.Redacted()
}

// ShellQuote returns s as one shell word: as it is when it holds only
// characters no shell treats specially, else in single quotes.
func ShellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./_-", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// IsTerminal reports whether w is a terminal (a character device).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// StatusLine rewrites one line of W in place; meant for a terminal
// (IsTerminal), where each Update replaces what the last one wrote.
type StatusLine struct {
	W io.Writer
}

// Update replaces the line with s.
func (l StatusLine) Update(s string) {
	io.WriteString(l.W, "\r\033[K"+s)
}

// Done ends the line.
func (l StatusLine) Done() {
	io.WriteString(l.W, "\n")
}
