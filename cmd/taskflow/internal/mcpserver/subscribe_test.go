package mcpserver

import (
	"context"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/agenttool"
)

// TestSubscriptionsAreBounded: the flows watched at once are capped
// (Config.MaxWatches): a subscription to one more is refused, one to a
// flow watched already (by any session) costs nothing, and an
// unsubscription makes room.
func TestSubscriptionsAreBounded(t *testing.T) {
	eachBackend(t, func(t *testing.T, m *taskflow.Manager) {
		ctx := context.Background()
		s, err := New(Config{Manager: m, AgentID: "kate", SessionID: "one", Tools: agenttool.PerAction, MaxWatches: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		a, b := connect(t, s), connect(t, s)
		var uris []string
		for range 3 {
			f := flowOf(t, a.call("taskflow_start", map[string]any{"controller_id": "kate/watch", "goal": "g"}, false))
			uris = append(uris, ResourcePrefix+f["id"].(string))
		}
		for _, u := range uris[:2] {
			if err := a.cs.Subscribe(ctx, &mcp.SubscribeParams{URI: u}); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.cs.Subscribe(ctx, &mcp.SubscribeParams{URI: uris[0]}); err != nil {
			t.Fatalf("a second subscriber of a watched flow: %v", err)
		}
		err = b.cs.Subscribe(ctx, &mcp.SubscribeParams{URI: uris[2]})
		if err == nil || !strings.Contains(err.Error(), "too many flows watched") {
			t.Fatalf("a third flow with MaxWatches 2: %v", err)
		}
		if err := a.cs.Unsubscribe(ctx, &mcp.UnsubscribeParams{URI: uris[1]}); err != nil {
			t.Fatal(err)
		}
		if err := b.cs.Subscribe(ctx, &mcp.SubscribeParams{URI: uris[2]}); err != nil {
			t.Fatalf("after an unsubscription: %v", err)
		}
		// The watch still notifies.
		a.call("taskflow_advance", map[string]any{"flow_id": strings.TrimPrefix(uris[0], ResourcePrefix), "patch": map[string]any{"x": 1}}, false)
		for _, c := range []*client{a, b} {
			if got := <-c.updates; got != uris[0] {
				t.Fatalf("notified of %s, want %s", got, uris[0])
			}
		}
	})
}
