package taskflow

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestCancelWithAudit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := e.waitingFlow(t, WaitManual())
		if _, err := e.m.Cancel(e.ctx, f.ID, WithAudit("ops:alice@host", "customer asked, ticket 42")); err != nil {
			t.Fatal(err)
		}
		events := must(t, try(e.m.ListEvents(e.ctx, f.ID, 1)))
		var payload map[string]string
		if err := json.Unmarshal(events[0].Payload, &payload); err != nil {
			t.Fatal(err)
		}
		if events[0].Kind != EventCancelled || payload["actor"] != "ops:alice@host" ||
			payload["reason"] != "customer asked, ticket 42" || len(payload) != 2 {
			t.Fatalf("event %s %s", events[0].Kind, events[0].Payload)
		}

		// An empty reason is left out; no option at all gives {}.
		g := e.waitingFlow(t, WaitManual())
		must(t, try(e.m.Cancel(e.ctx, g.ID, WithAudit("ops:bob", " "))))
		if ev := must(t, try(e.m.ListEvents(e.ctx, g.ID, 1))); string(ev[0].Payload) != `{"actor":"ops:bob"}` {
			t.Fatalf("payload %s", ev[0].Payload)
		}
		h := e.waitingFlow(t, WaitManual())
		must(t, try(e.m.Cancel(e.ctx, h.ID)))
		if ev := must(t, try(e.m.ListEvents(e.ctx, h.ID, 1))); string(ev[0].Payload) != `{}` {
			t.Fatalf("payload %s", ev[0].Payload)
		}

		// Too long: refused, nothing written.
		k := e.waitingFlow(t, WaitManual())
		before := e.dump()
		_, err := e.m.Cancel(e.ctx, k.ID, WithAudit("ops", strings.Repeat("x", maxAuditText+1)))
		if !errors.Is(err, ErrInvalidData) {
			t.Fatalf("err %v, want ErrInvalidData", err)
		}
		if after := e.dump(); len(after) != len(before) || must(t, try(e.m.Get(e.ctx, k.ID))).Status != StatusWaiting {
			t.Fatal("a refused cancel changed the flow space")
		}
	})
}
