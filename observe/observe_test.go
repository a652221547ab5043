package observe

import (
	"context"
	"testing"
)

type tpKey struct{}

// TestJoin: a joined observer calls every hook of every observer given
// (nil ones and unset hooks skipped), and its trace parent is the first
// non-empty answer.
func TestJoin(t *testing.T) {
	var ops, ticks, claims, bridges int
	count := &Observer{
		Op:     func(context.Context, Op) { ops++ },
		Tick:   func(context.Context, Tick) { ticks++ },
		Claim:  func(context.Context, Claim) { claims++ },
		Bridge: func(context.Context, Bridge) { bridges++ },
	}
	none := &Observer{TraceParent: func(context.Context) string { return "" }}
	tp := &Observer{TraceParent: func(ctx context.Context) string { s, _ := ctx.Value(tpKey{}).(string); return s }}
	j := Join(nil, count, none, tp, count, &Observer{})
	ctx := context.WithValue(context.Background(), tpKey{}, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	j.Op(ctx, Op{Op: "create"})
	j.Tick(ctx, Tick{})
	j.Claim(ctx, Claim{})
	j.Bridge(ctx, Bridge{Outcome: "nomatch"})
	if ops != 2 || ticks != 2 || claims != 2 || bridges != 2 {
		t.Fatalf("joined observer reached op %d, tick %d, claim %d, bridge %d; want 2 each", ops, ticks, claims, bridges)
	}
	if got := j.TraceParent(ctx); got != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Fatalf("trace parent %q", got)
	}
}
