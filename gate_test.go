package taskflow

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
)

// gatedInput is a running flow of controller "ctl/gate" with keys and a
// priority.
func gatedInput(goal string, priority int, keys ...string) CreateManagedInput {
	in := seedInput()
	in.ControllerID = "ctl/gate"
	in.Goal = goal
	in.Concurrency = keys
	in.Priority = priority
	return in
}

// claimNow claims a flow of "ctl/gate" without waiting.
func claimNow(t *testing.T, e *env, worker string) (*Flow, *Lease) {
	t.Helper()
	f, l, err := e.m.Claim(e.ctx, "ctl/gate", worker, time.Minute, WithClaimWait(0))
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	return f, l
}

func TestGateConcurrencyLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		if err := e.m.SetKeyLimit(ctx, KeyLimit{Key: "tenant:acme", Concurrency: 2}); err != nil {
			t.Fatal(err)
		}
		var ids []uuid.UUID
		for i := range 5 {
			f := must(t, try(e.m.CreateMirrored(ctx, gatedInput(fmt.Sprint("job ", i), 0, "tenant:acme"))))
			if len(f.Concurrency) != 1 || f.Concurrency[0] != "tenant:acme" {
				t.Fatalf("created with keys %v", f.Concurrency)
			}
			ids = append(ids, f.ID)
			e.clock.Advance(time.Millisecond) // age orders a group's flows
		}
		var leases []*Lease
		for i := range 2 {
			f, l := claimNow(t, e, "w")
			if f == nil || f.ID != ids[i] {
				t.Fatalf("claim %d: %v, want the oldest %s", i, f, ids[i])
			}
			leases = append(leases, l)
		}
		if f, _ := claimNow(t, e, "w"); f != nil {
			t.Fatalf("a third claim under a limit of 2 got %s", f.ID)
		}
		use := must(t, try(e.m.KeyLimits(ctx)))
		if len(use) != 1 || use[0].InFlight != 2 || use[0].Backlog != 3 || use[0].Concurrency != 2 {
			t.Fatalf("key limits: %+v", use)
		}
		// A finish frees a slot: the next flow is claimed.
		must(t, try(e.m.Finish(ctx, leases[0].FlowID, nil, WithLease(leases[0]))))
		f, l := claimNow(t, e, "w")
		if f == nil || f.ID != ids[2] {
			t.Fatalf("after a finish: %v, want %s", f, ids[2])
		}
		// A release frees one, and the flow goes back on the lane,
		// behind the flows that waited.
		if err := e.m.Release(ctx, l); err != nil {
			t.Fatal(err)
		}
		f, l = claimNow(t, e, "w")
		if f == nil || f.ID != ids[3] {
			t.Fatalf("after a release: %v, want %s", f, ids[3])
		}
		if f, _ := claimNow(t, e, "w"); f != nil {
			t.Fatalf("a claim over the limit after a release got %s", f.ID)
		}
		// An expired lease frees its slot without any call.
		e.clock.Advance(2 * time.Minute)
		f, _ = claimNow(t, e, "w")
		if f == nil {
			t.Fatal("no claim once the leases expired")
		}
		// Removing the limit admits the rest.
		if err := e.m.DeleteKeyLimit(ctx, "tenant:acme"); err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			f, _ := claimNow(t, e, "w")
			if f == nil {
				break
			}
			n++
		}
		if n == 0 {
			t.Fatal("nothing claimed once the limit was deleted")
		}
		_ = l
	})
}

func TestGateFairAndPriority(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		for i := range 30 {
			must(t, try(e.m.CreateMirrored(ctx, gatedInput(fmt.Sprint("a ", i), 0, "tenant:a"))))
			e.clock.Advance(time.Millisecond)
		}
		var bs []uuid.UUID
		for i := range 3 {
			bs = append(bs, must(t, try(e.m.CreateMirrored(ctx, gatedInput(fmt.Sprint("b ", i), 0, "tenant:b")))).ID)
		}
		urgent := must(t, try(e.m.CreateMirrored(ctx, gatedInput("urgent", 5, "tenant:a"))))
		f, _ := claimNow(t, e, "w")
		if f == nil || f.ID != urgent.ID {
			t.Fatalf("first claim %v, want the urgent flow", f)
		}
		seenB := 0
		for i := 0; i < 8; i++ {
			f, _ := claimNow(t, e, "w")
			if f == nil {
				t.Fatal("lane ran dry")
			}
			if f.Concurrency[0] == "tenant:b" {
				seenB++
			}
		}
		if seenB != 3 {
			t.Fatalf("%d of tenant b's 3 flows in the first 8 claims", seenB)
		}
	})
}

func TestGateBadInput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		for _, in := range []CreateManagedInput{
			gatedInput("x", 0, "has space"),
			gatedInput("x", 0, "a", "a"),
			gatedInput("x", 10, "a"),
			gatedInput("x", -1),
			gatedInput("x", 0, "a", "b", "c", "d", "e"),
		} {
			if _, err := e.m.CreateMirrored(ctx, in); !errors.Is(err, ErrInvalidData) {
				t.Fatalf("%v %d: %v, want ErrInvalidData", in.Concurrency, in.Priority, err)
			}
		}
		for _, l := range []KeyLimit{{Key: ""}, {Key: "a|b"}, {Key: "a", Concurrency: -1}, {Key: "a", Weight: 1001}, {Key: "a", Rate: 1, Per: time.Microsecond}} {
			if err := e.m.SetKeyLimit(ctx, l); !errors.Is(err, ErrInvalidData) {
				t.Fatalf("%+v: %v, want ErrInvalidData", l, err)
			}
		}
	})
}
