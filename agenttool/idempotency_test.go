package agenttool

import (
	"errors"
	"strings"
	"testing"

	"github.com/taskflow-dev/taskflow"
)

func TestStartIdempotencyKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		start := `{"action":"start","controller_id":"kate/triage","goal":"answer msg 42","idempotency_key":"msg-42"}`
		first := callFlow(t, tool, sessA, start)
		again := callFlow(t, tool, sessA, start)
		if first["id"] != again["id"] || num(t, again["revision"]) != 1 {
			t.Fatalf("repeated start: %v then %v", first, again)
		}
		// Another tenant with the same key gets its own flow.
		other := callFlow(t, tool, sessB, start)
		if other["id"] == first["id"] {
			t.Fatal("two sessions' keys named one flow")
		}
		for _, s := range []Session{sessA, sessB} {
			res := callOK(t, tool, s, `{"action":"list_mine"}`)
			if num(t, res["count"]) != 1 {
				t.Fatalf("session %v has %v flows, want 1", s, res["count"])
			}
		}
		// The same key with other arguments is refused, with a hint.
		err := callErr(t, tool, sessA, `{"action":"start","controller_id":"kate/triage","goal":"something else","idempotency_key":"msg-42"}`, ErrArgs)
		if !errors.Is(err, taskflow.ErrIdempotencyConflict) || !strings.Contains(err.Error(), "new key") {
			t.Fatalf("conflict error: %v", err)
		}
		callErr(t, tool, sessA, `{"action":"start","controller_id":"kate/c","goal":"g","idempotency_key":"`+strings.Repeat("k", MaxIdempotencyKeyBytes+1)+`"}`, ErrArgs)
		// Without a key each start is a new flow.
		if startFlow(t, tool, sessC, "g") == startFlow(t, tool, sessC, "g") {
			t.Fatal("keyless starts made one flow")
		}
		mustVerify(t, e)
	})
}

func TestListMineSaysWhenTruncated(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		const n = ListLimit + 3
		for i := 0; i < n; i++ {
			if _, err := e.m.CreateMirrored(e.ctx, taskflow.CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: sessA.OwnerKey()}); err != nil {
				t.Fatal(err)
			}
		}
		res := callOK(t, tool, sessA, `{"action":"list_mine"}`)
		if num(t, res["count"]) != ListLimit || num(t, res["total"]) != n || res["truncated"] != true {
			t.Fatalf("list_mine: count %v total %v truncated %v, want %d %d true", res["count"], res["total"], res["truncated"], ListLimit, n)
		}
		if len(res["flows"].([]any)) != ListLimit {
			t.Fatalf("%d flows listed", len(res["flows"].([]any)))
		}
	})
}
