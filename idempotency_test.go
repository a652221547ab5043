package taskflow

import (
	"errors"
	"reflect"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow/fsck"
)

func TestIdempotentCreateReturnsExistingFlow(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		in := CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o", State: map[string]int{"n": 1}, IdempotencyKey: "webhook-42"}
		f, err := e.m.CreateManaged(e.ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if f.ID != e.store.IdempotentFlowID("webhook-42") || f.ID.Version() != 5 {
			t.Fatalf("id %s (version %d), want the key's v5 id %s", f.ID, f.ID.Version(), e.store.IdempotentFlowID("webhook-42"))
		}
		before := e.dump()
		e.clock.Advance(1000)
		again, err := e.m.CreateManaged(e.ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(again, f) {
			t.Fatalf("second create returned %+v, want %+v", again, f)
		}
		if after := e.dump(); !reflect.DeepEqual(after, before) {
			t.Fatal("the second create wrote something")
		}
		// After progress, a retry returns the flow as it is now.
		if _, err := e.m.StartRunning(e.ctx, f.ID); err != nil {
			t.Fatal(err)
		}
		again, err = e.m.CreateManaged(e.ctx, in)
		if err != nil || again.Status != StatusRunning || again.Revision != 1 {
			t.Fatalf("retry after start: %+v %v", again, err)
		}
		// Other input with the same key is refused and writes nothing.
		before = e.dump()
		for _, other := range []func(*CreateManagedInput){
			func(c *CreateManagedInput) { c.Goal = "other" },
			func(c *CreateManagedInput) { c.State = map[string]int{"n": 2} },
			func(c *CreateManagedInput) { c.OwnerSessionKey = "o2" },
		} {
			c := in
			other(&c)
			if _, err := e.m.CreateManaged(e.ctx, c); !errors.Is(err, ErrIdempotencyConflict) {
				t.Fatalf("other input: %v, want ErrIdempotencyConflict", err)
			}
		}
		if _, err := e.m.CreateMirrored(e.ctx, in); !errors.Is(err, ErrIdempotencyConflict) {
			t.Fatalf("mirrored with a managed flow's key: %v, want ErrIdempotencyConflict", err)
		}
		if after := e.dump(); !reflect.DeepEqual(after, before) {
			t.Fatal("a refused create wrote something")
		}
		// Without a key every create is a new flow.
		a, _ := e.m.CreateManaged(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})
		b, _ := e.m.CreateManaged(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})
		if a == nil || b == nil || a.ID == b.ID || a.ID.Version() != 4 {
			t.Fatalf("keyless creates: %v %v", a, b)
		}
		// A key is scoped to its flow space.
		other, err := NewRedisStore(e.client, WithPrefix(e.prefix+"-other"))
		if err != nil {
			t.Fatal(err)
		}
		if other.IdempotentFlowID("webhook-42") == f.ID {
			t.Fatal("two flow spaces derive the same id from one key")
		}
		if _, err := e.m.CreateManaged(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o", IdempotencyKey: string(make([]byte, maxIdempotencyKeyBytes+1))}); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("oversized key: %v", err)
		}
		mustVerify(t, e)
	})
}

func TestIdempotentCreateRace(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		for _, mirrored := range []bool{false, true} {
			in := CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "race", IdempotencyKey: "k-" + uuid.NewString()}
			const n = 16
			flows := make([]*Flow, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					m := NewManager(e.reopenStore(e.b.client(t)))
					<-start
					if mirrored {
						flows[i], errs[i] = m.CreateMirrored(e.ctx, in)
					} else {
						flows[i], errs[i] = m.CreateManaged(e.ctx, in)
					}
				}(i)
			}
			close(start)
			wg.Wait()
			for i := range flows {
				if errs[i] != nil {
					t.Fatalf("create %d: %v", i, errs[i])
				}
				if flows[i].ID != flows[0].ID || flows[i].Revision != flows[0].Revision {
					t.Fatalf("create %d returned %s rev %d, create 0 %s rev %d", i, flows[i].ID, flows[i].Revision, flows[0].ID, flows[0].Revision)
				}
			}
			evs, err := e.m.ListEvents(e.ctx, flows[0].ID, 100)
			if err != nil {
				t.Fatal(err)
			}
			want := 1
			if mirrored {
				want = 2
			}
			if len(evs) != want {
				t.Fatalf("mirrored=%v: %d events, want %d", mirrored, len(evs), want)
			}
		}
		all, err := e.m.ListByOwner(e.ctx, "race")
		if err != nil || len(all) != 2 {
			t.Fatalf("owner has %d flows (%v), want 2", len(all), err)
		}
		mustVerify(t, e)
	})
}

func TestVerifyChecksIdempotencyFingerprint(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f, err := e.m.CreateManaged(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o", IdempotencyKey: "k"})
		if err != nil {
			t.Fatal(err)
		}
		plain, err := e.m.CreateManaged(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})
		if err != nil {
			t.Fatal(err)
		}
		mustVerify(t, e)
		e.client.HSet(e.ctx, e.store.keys.flow(f.ID), "idem", "not-hex")
		e.client.HSet(e.ctx, e.store.keys.flow(plain.ID), "idem", "0123456789abcdef0123456789abcdef")
		rep, err := e.store.verify(e.ctx, fsck.WithRepair())
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, p := range rep.Problems {
			if p.Kind == "bad_idempotency" {
				got[p.FlowID] = true
			}
		}
		if !got[f.ID.String()] || !got[plain.ID.String()] || len(rep.Problems) != 2 {
			t.Fatalf("problems %+v, want bad_idempotency for both flows", rep.Problems)
		}
	})
}
