package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/clitext"
	"github.com/taskflow-dev/taskflow/internal/plainjson"
)

// writeJSON writes v as indented JSON, text as written ('<', '>' and
// '&' are not HTML-escaped).
func writeJSON(w io.Writer, v any) error { return plainjson.Encode(w, v, true) }

// writeJSONLine writes v as one line of JSON, not HTML-escaped.
func writeJSONLine(w io.Writer, v any) error { return plainjson.Encode(w, v, false) }

// fmtTime formats t as RFC 3339 in UTC; the zero time is "-".
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// indentJSON returns raw pretty-printed with prefix before every line.
func indentJSON(raw []byte, prefix string) string {
	if len(raw) == 0 {
		return prefix + "{}"
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, prefix, "  "); err != nil {
		return prefix + string(raw)
	}
	return prefix + buf.String()
}

// wrapText wraps each paragraph of s (paragraphs are separated by blank
// lines; a line starting with spaces is kept as it is) at width columns,
// each line after indent, and ends it with a newline.
func wrapText(s string, width int, indent string) string {
	var b strings.Builder
	for i, para := range strings.Split(strings.TrimSpace(s), "\n\n") {
		if i > 0 {
			b.WriteString("\n")
		}
		var words []string
		flush := func() {
			line := indent
			for _, w := range words {
				if line != indent && utf8.RuneCountInString(line)+1+utf8.RuneCountInString(w) > width {
					b.WriteString(line + "\n")
					line = indent
				}
				if line != indent {
					line += " "
				}
				line += w
			}
			if line != indent {
				b.WriteString(line + "\n")
			}
			words = nil
		}
		for _, line := range strings.Split(para, "\n") {
			if strings.HasPrefix(line, "  ") {
				flush()
				b.WriteString(indent + line + "\n")
				continue
			}
			words = append(words, strings.Fields(line)...)
		}
		flush()
	}
	return b.String()
}

// Colours of paint.
const (
	red    = "31"
	green  = "32"
	yellow = "33"
	dim    = "2"
)

// paint colours s for w when w is a terminal and NO_COLOR is not set
// (https://no-color.org); otherwise it returns s as it is.
func paint(w io.Writer, colour, s string) string {
	if colour == "" || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" || !clitext.IsTerminal(w) {
		return s
	}
	return "\033[" + colour + "m" + s + "\033[0m"
}

// waitInfo is a flow's wait_json read for people.
type waitInfo struct {
	Kind          string    `json:"kind"`
	At            time.Time `json:"at"`
	Topic         string    `json:"topic"`
	CorrelationID string    `json:"correlation_id"`
	// Need and FailFast are a children wait's join.
	Need     int  `json:"need"`
	FailFast bool `json:"fail_fast"`
}

// readWait decodes a wait_json; ok is false when there is none or it is
// not the documented shape.
func readWait(raw []byte) (w waitInfo, ok bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return w, false
	}
	if json.Unmarshal(raw, &w) != nil || w.Kind == "" {
		return w, false
	}
	return w, true
}

// waitColumn is the WAIT cell of list: the kind, with the topic of an
// external event.
func waitColumn(raw []byte) string {
	w, ok := readWait(raw)
	switch {
	case !ok && len(raw) > 0 && string(raw) != "null":
		return clitext.Cell(clitext.CompactJSON(raw), 30)
	case !ok:
		return "-"
	case w.Kind == "external_event":
		return clitext.Cell("event "+w.Topic, 30)
	}
	return w.Kind
}

// dueColumn is the DUE cell of list: a timer's deadline (seconds, UTC).
func dueColumn(raw []byte) string {
	if w, ok := readWait(raw); ok && w.Kind == "timer" && !w.At.IsZero() {
		return fmtTime(w.At)
	}
	return "-"
}

// describeWait is a wait in words, for show.
func describeWait(raw []byte, now time.Time) string {
	w, ok := readWait(raw)
	if !ok {
		if len(raw) == 0 || string(raw) == "null" {
			return "-"
		}
		return clitext.CompactJSON(raw)
	}
	switch w.Kind {
	case "timer":
		return fmt.Sprintf("timer, due %s (%s)", fmtTimeMs(w.At), fmtRelative(w.At, now))
	case "external_event":
		return fmt.Sprintf("external event, topic %s, correlation id %s", clitext.Cell(w.Topic, 0), clitext.Cell(w.CorrelationID, 0))
	case "manual":
		return "manual resume ('taskflow resume <id>')"
	case "children":
		what := "children, need all"
		if w.Need > 0 {
			what = fmt.Sprintf("children, need %d", w.Need)
		}
		if w.FailFast {
			what += ", fail fast"
		}
		if !w.At.IsZero() {
			what += fmt.Sprintf(", deadline %s (%s)", fmtTimeMs(w.At), fmtRelative(w.At, now))
		}
		return what
	}
	return clitext.CompactJSON(raw)
}

// fmtTimeMs formats t as RFC 3339 in UTC with milliseconds.
func fmtTimeMs(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// jsonEvent is an audit event as --json prints it: its id a JSON number,
// like the revision beside it (the library keeps it as a decimal string).
type jsonEvent struct {
	*taskflow.FlowEvent
	ID json.Number `json:"id"`
}

// jsonEvents is events as --json prints them.
func jsonEvents(events []*taskflow.FlowEvent) []jsonEvent {
	out := make([]jsonEvent, len(events))
	for i, ev := range events {
		out[i] = jsonEvent{ev, json.Number(ev.ID)}
	}
	return out
}
