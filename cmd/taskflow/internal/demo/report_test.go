package demo

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/taskflow-dev/taskflow"
)

// events builds a flow's log, newest first as ListEvents returns it, from
// "kind" or "kind@token" entries given oldest first; lease_expired takes
// its token in the payload, as the engine writes it.
func events(entries ...string) []*taskflow.FlowEvent {
	out := make([]*taskflow.FlowEvent, len(entries))
	for i, e := range entries {
		kind, token, _ := strings.Cut(e, "@")
		ev := &taskflow.FlowEvent{ID: strconv.Itoa(i + 1), Kind: taskflow.EventKind(kind), Payload: json.RawMessage(`{}`)}
		if taskflow.EventKind(kind) == taskflow.EventLeaseExpired {
			ev.Payload = json.RawMessage(`{"worker":"worker-1","lease":"` + token + `"}`)
		} else {
			ev.Lease = token
		}
		out[len(entries)-1-i] = ev
	}
	return out
}

func TestLeaseOrder(t *testing.T) {
	ok := [][]string{
		{"created", "started", "claimed@a", "state_updated@a", "step_observed", "finished@a"},
		// A peer's unleased write while a lease is live.
		{"created", "started", "claimed@a", "state_updated", "state_updated@a", "released@a", "claimed@b", "waiting@b",
			"resumed", "claimed@c", "finished@c"},
		{"created", "started", "claimed@a", "state_updated@a", "lease_expired@a", "claimed@b", "failed@b"},
	}
	for _, log := range ok {
		if why := leaseOrder(audited{events: events(log...)}); why != "" {
			t.Errorf("%v: %s", log, why)
		}
	}
	bad := map[string][]string{
		"which had ended":                     {"created", "started", "claimed@a", "lease_expired@a", "claimed@b", "state_updated@a"},
		"under lease b while lease a is live": {"created", "started", "claimed@a", "state_updated@b"},
		"never claimed":                       {"created", "started", "state_updated@a"},
		"had ended":                           {"created", "started", "claimed@a", "waiting@a", "resumed", "state_updated@a"},
		"is live":                             {"created", "started", "claimed@a", "claimed@b"},
	}
	for want, log := range bad {
		if why := leaseOrder(audited{events: events(log...)}); !strings.Contains(why, want) {
			t.Errorf("%v: %q, want it to say %q", log, why, want)
		}
	}
}
