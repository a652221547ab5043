package agenttool

import (
	"strings"
	"testing"
	"time"
)

// The original's key phrases survive in our error texts, so hosts that
// match on them keep working; flow ids come in the original's forms.
func TestErrorPhrasesAndIDForms(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		id := startFlow(t, tool, sessA, "phrases")
		ts := func(d time.Duration) string { return e.clock.Now().Add(d).UTC().Format(time.RFC3339Nano) }
		for _, c := range []struct {
			s      Session
			args   string
			phrase string
		}{
			{sessA, args(t, "action", "wait", "flow_id", id, "wait_condition", map[string]any{"kind": "timer", "at": ts(-time.Minute)}), "must be in the future"},
			{sessA, args(t, "action", "wait", "flow_id", id, "wait_condition", map[string]any{"kind": "timer", "at": ts(31 * 24 * time.Hour)}), "max horizon"},
			{sessA, args(t, "action", "wait", "flow_id", id, "wait_condition", map[string]any{"kind": "external_event", "topic": " ", "correlation_id": "c"}), "cannot be empty"},
			{sessA, args(t, "action", "wait", "flow_id", id, "wait_condition", map[string]any{"kind": "external_event", "topic": "t", "correlation_id": ""}), "cannot be empty"},
			{sessA, args(t, "action", "start", "controller_id", "", "goal", "g"), "cannot be empty"},
			{sessA, args(t, "action", "start", "controller_id", "c", "goal", " "), "cannot be empty"},
			{sessA, args(t, "action", "fail", "flow_id", id, "reason", ""), "cannot be empty"},
			{Session{AgentID: "kate"}, `{"action":"list_mine"}`, "session_id"},
		} {
			err := callErr(t, tool, c.s, c.args, ErrArgs)
			wantText(t, err, c.phrase)
		}
		// Braced, URN (any case) and bare-hex ids name the same flow.
		for _, form := range []string{id, "{" + id + "}", "urn:uuid:" + id, "URN:UUID:" + strings.ToUpper(id), strings.ReplaceAll(id, "-", "")} {
			f := callFlow(t, tool, sessA, args(t, "action", "status", "flow_id", form))
			if f["id"] != id {
				t.Fatalf("%s: id %v", form, f["id"])
			}
		}
		// A braced id of another session is still forbidden.
		callErr(t, tool, sessB, args(t, "action", "status", "flow_id", "{"+id+"}"), ErrForbidden)
	})
}
