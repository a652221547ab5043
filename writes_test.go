package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/fsck"
	"github.com/taskflow-dev/taskflow/internal/testbackend"
	"github.com/taskflow-dev/taskflow/observe"
)

// TestShallowMergeExactBytes: values come back byte for byte; the state
// is never decoded by the scripts.
func TestShallowMergeExactBytes(t *testing.T) {
	deep := strings.Repeat("[", 200) + "1" + strings.Repeat("]", 200)
	values := []string{
		`9223372036854775807`, `123456789012345678901234567890`, `0.1`, `1e300`, `-0.0`,
		`[]`, `{}`, `null`, `"a/b"`, `"<&>"`, `"héllo \u0000 wörld ☃ \ud83d\ude00"`, deep,
		`{"a":[]}`, `[1,null,2]`, `true`, `-1.5E-7`,
	}
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		for i, v := range values {
			key := fmt.Sprintf("k%02d", i)
			f = must(t, try(e.m.UpdateState(ctx, f.ID, json.RawMessage(`{"`+key+`":`+v+`}`), "")))
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(f.State, &m); err != nil {
			t.Fatal(err)
		}
		for i, v := range values {
			if got := string(m[fmt.Sprintf("k%02d", i)]); got != v {
				t.Errorf("value %d: got %s, want %s", i, got, v)
			}
		}
		if string(m["total"]) != "31" {
			t.Errorf("untouched key changed: %s", m["total"])
		}
		got := must(t, try(e.m.Get(ctx, f.ID)))
		if string(got.State) != string(f.State) {
			t.Fatalf("Get state differs from the returned one")
		}
		// A null in a patch sets the key to null.
		f = must(t, try(e.m.UpdateState(ctx, f.ID, json.RawMessage(`{"total":null}`), "")))
		if !strings.Contains(string(f.State), `"total":null`) {
			t.Fatalf("null patch: %s", f.State)
		}
		// A non-object patch replaces the whole state; an object patch on a
		// non-object state replaces it too.
		f = must(t, try(e.m.UpdateState(ctx, f.ID, json.RawMessage(`[1,{"x":[]}]`), "")))
		if string(f.State) != `[1,{"x":[]}]` {
			t.Fatalf("replace: %s", f.State)
		}
		f = must(t, try(e.m.UpdateState(ctx, f.ID, json.RawMessage(`{"b":2,"a":1}`), "")))
		if string(f.State) != `{"a":1,"b":2}` {
			t.Fatalf("object over array: %s", f.State)
		}
		f = must(t, try(e.m.UpdateState(ctx, f.ID, json.RawMessage(`{}`), "")))
		if string(f.State) != `{"a":1,"b":2}` {
			t.Fatalf("empty patch: %s", f.State)
		}
		// Keys with awkward bytes.
		f = must(t, try(e.m.UpdateState(ctx, f.ID, map[string]any{"{x}:y": 1, "nul\x00key": 2, "": 3}, "")))
		var back map[string]int
		if err := json.Unmarshal(f.State, &back); err != nil || back["{x}:y"] != 1 || back["nul\x00key"] != 2 || back[""] != 3 {
			t.Fatalf("awkward keys: %s %v", f.State, err)
		}
	})
}

func TestMergeMatchesReference(t *testing.T) {
	cases := [][2]string{
		{`{"a":1}`, `{"b":2}`}, {`{"a":1}`, `{"a":[]}`}, {`{"a":1}`, `[1]`}, {`"s"`, `{"a":1}`},
		{`{"a":{"x":1}}`, `{"a":{"y":2}}`}, {`{}`, `{}`}, {`{"a":1}`, `null`}, {`7`, `8`},
	}
	forEachBackend(t, func(t *testing.T, e *env) {
		for _, c := range cases {
			in := seedInput()
			in.State = json.RawMessage(c[0])
			f := must(t, try(e.m.CreateMirrored(e.ctx, in)))
			f = must(t, try(e.m.UpdateState(e.ctx, f.ID, json.RawMessage(c[1]), "")))
			want, err := referenceMerge([]byte(c[0]), []byte(c[1]))
			if err != nil {
				t.Fatal(err)
			}
			if string(f.State) != string(want) {
				t.Errorf("merge %s + %s = %s, want %s", c[0], c[1], f.State, want)
			}
		}
	})
}

func TestInvalidInputWritesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		before := e.dump()
		_, err := e.m.UpdateState(ctx, f.ID, json.RawMessage(`{"a":`), "")
		wantErr(t, err, ErrInvalidData)
		_, err = e.m.UpdateState(ctx, f.ID, map[string]any{"c": make(chan int)}, "")
		wantErr(t, err, ErrInvalidData)
		_, err = e.m.SetWaiting(ctx, f.ID, json.RawMessage(`{"kind":"timer","at":"tomorrow"}`))
		wantErr(t, err, ErrInvalidData)
		_, err = e.m.SetWaiting(ctx, f.ID, WaitExternalEvent("", "x"))
		wantErr(t, err, ErrInvalidData)
		_, err = e.m.SetWaiting(ctx, f.ID, nil)
		wantErr(t, err, ErrInvalidData)
		_, err = e.m.SetWaiting(ctx, f.ID, json.RawMessage(`"manual"`))
		wantErr(t, err, ErrInvalidData)
		in := seedInput()
		in.ControllerID = " "
		_, err = e.m.CreateManaged(ctx, in)
		wantErr(t, err, ErrInvalidData)
		in = seedInput()
		in.State = json.RawMessage(`{nope}`)
		_, err = e.m.CreateManaged(ctx, in)
		wantErr(t, err, ErrInvalidData)
		if after := e.dump(); !reflect.DeepEqual(before, after) {
			t.Fatalf("invalid input changed Redis")
		}
	})
}

func TestUpdateAndAppendStaleRevision(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateManaged(ctx, seedInput())))
		f = must(t, try(e.m.StartRunning(ctx, f.ID)))
		stale := *f
		f.CurrentStep = "next"
		f.State = json.RawMessage(`{"whole":"record"}`)
		nf, ev, err := e.store.UpdateAndAppend(ctx, f, "custom", map[string]int{"n": 1})
		if err != nil {
			t.Fatal(err)
		}
		if nf.Revision != 2 || nf.CurrentStep != "next" || string(nf.State) != `{"whole":"record"}` {
			t.Fatalf("written: %+v", nf)
		}
		if ev.Kind != "custom" || ev.Revision != 2 || string(ev.Payload) != `{"n":1}` || ev.FlowID != f.ID {
			t.Fatalf("event: %+v", ev)
		}
		before := e.dump()
		stale.Goal = "overwritten?"
		_, _, err = e.store.UpdateAndAppend(ctx, &stale, "custom", nil)
		wantErr(t, err, ErrRevisionMismatch)
		var rm *RevisionMismatchError
		if !errors.As(err, &rm) || rm.Expected != 1 || rm.Actual != 2 || rm.FlowID != f.ID {
			t.Fatalf("mismatch detail: %#v", err)
		}
		if after := e.dump(); !reflect.DeepEqual(before, after) {
			t.Fatalf("stale write changed Redis")
		}
		// Whole-record write into waiting keeps the timer index in step.
		w := *nf
		w.Status = StatusWaiting
		w.Wait = json.RawMessage(`{"kind":"timer","at":"2030-01-01T00:00:00Z"}`)
		must(t, try(0, func() error { _, _, err := e.store.UpdateAndAppend(ctx, &w, "waiting", nil); return err }()))
		if n := e.client.ZCard(ctx, e.store.keys.timers(e.store.keys.shardOf(f.ID))).Val(); n != 1 {
			t.Fatalf("timer index: %d", n)
		}
	})
}

func TestConcurrentMergesNeverConflict(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateManaged(ctx, seedInput())))
		f = must(t, try(e.m.StartRunning(ctx, f.ID)))
		// Two managers on two clients, as the original's two tasks.
		m2 := NewManager(e.reopenStore(e.b.client(t)))
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, mgr := range []*Manager{e.m, m2} {
			wg.Add(1)
			go func(i int, mgr *Manager) {
				defer wg.Done()
				_, errs[i] = mgr.UpdateState(ctx, f.ID, map[string]int{string(rune('a' + i)): i + 1}, "")
			}(i, mgr)
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		got := must(t, try(e.m.Get(ctx, f.ID)))
		if got.Revision != 3 || stateOf(t, got)["a"] != float64(1) || stateOf(t, got)["b"] != float64(2) {
			t.Fatalf("after race: %+v %s", got, got.State)
		}

		// 64 goroutines, distinct keys: all land.
		const n = 64
		errs = make([]error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				_, errs[i] = e.m.UpdateState(ctx, f.ID, map[string]int{fmt.Sprintf("k%d", i): i}, "")
			}(i)
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		got = must(t, try(e.m.Get(ctx, f.ID)))
		if got.Revision != 3+n {
			t.Fatalf("revision %d, want %d", got.Revision, 3+n)
		}
		st := stateOf(t, got)
		for i := 0; i < n; i++ {
			if st[fmt.Sprintf("k%d", i)] != float64(i) {
				t.Fatalf("key k%d lost", i)
			}
		}
		if evs := must(t, try(e.m.ListEvents(ctx, f.ID, 1000))); len(evs) != 2+2+n {
			t.Fatalf("%d events", len(evs))
		}
	})
}

// TestHeavyContentionCompareAndSet: callers that insist on compare-and-set
// either succeed or get ErrRevisionMismatch, and the revision counts the
// successes exactly.
func TestHeavyContentionCompareAndSet(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateManaged(ctx, seedInput())))
		f = must(t, try(e.m.StartRunning(ctx, f.ID)))
		const n = 32
		var wg sync.WaitGroup
		results := make([]error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				// Read, then write with the revision read, retrying twice as
				// the original does.
				for attempt := 0; attempt < 2; attempt++ {
					cur, err := e.m.Get(ctx, f.ID)
					if err != nil {
						results[i] = err
						return
					}
					_, err = e.m.UpdateState(ctx, f.ID, map[string]int{fmt.Sprintf("k%d", i): i}, "", IfRevision(cur.Revision))
					results[i] = err
					if err == nil || !errors.Is(err, ErrRevisionMismatch) {
						return
					}
				}
			}(i)
		}
		wg.Wait()
		ok, conflict := 0, 0
		for _, err := range results {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrRevisionMismatch):
				conflict++
			default:
				t.Fatalf("unexpected error %v", err)
			}
		}
		if ok+conflict != n || ok == 0 {
			t.Fatalf("ok %d conflict %d", ok, conflict)
		}
		got := must(t, try(e.m.Get(ctx, f.ID)))
		if got.Revision != int64(1+ok) {
			t.Fatalf("revision %d, successes %d", got.Revision, ok)
		}
	})
}

// TestLargePatch: a patch of more keys than one HSET chunk holds lands
// whole, with the record fields written alongside.
func TestLargePatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := must(t, try(e.m.CreateMirrored(e.ctx, seedInput())))
		patch := map[string]int{}
		for i := 0; i < 1500; i++ {
			patch[fmt.Sprintf("k%04d", i)] = i
		}
		got := must(t, try(e.m.UpdateState(e.ctx, f.ID, patch, "bulk")))
		st := stateOf(t, got)
		if len(st) != 1502 || st["k1499"] != float64(1499) || got.CurrentStep != "bulk" || got.Revision != 2 {
			t.Fatalf("%d keys, step %q, revision %d", len(st), got.CurrentStep, got.Revision)
		}
		in := seedInput()
		in.State = patch
		g := must(t, try(e.m.CreateManaged(e.ctx, in)))
		if n := len(stateOf(t, must(t, try(e.m.Get(e.ctx, g.ID))))); n != 1500 {
			t.Fatalf("created with %d keys", n)
		}
	})
}

// A waiting flow without a wait whose cancel request came through
// UpdateAndAppend leaves the cancel set when the engine cancels it.
func TestCancelSetClearedForWaitingFlowWithoutWait(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f, err := e.m.CreateMirrored(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})
		if err != nil {
			t.Fatal(err)
		}
		f.Status = StatusWaiting
		f.Wait = nil
		f.CancelRequested = true
		if _, _, err := e.store.UpdateAndAppend(e.ctx, f, "operator_edit", nil); err != nil {
			t.Fatal(err)
		}
		cw := e.store.keys.cancelWait(e.store.keys.shardOf(f.ID))
		if !e.client.SIsMember(e.ctx, cw, f.ID.String()).Val() {
			t.Fatal("the cancel request is not in the cancel set")
		}
		rep := NewWaitEngine(e.m).TickAt(e.ctx, e.clock.Now())
		if rep.Cancelled != 1 || rep.Err != nil {
			t.Fatalf("tick: %+v", rep)
		}
		got, err := e.m.Get(e.ctx, f.ID)
		if err != nil || got.Status != StatusCancelled {
			t.Fatalf("flow after tick: %+v %v", got, err)
		}
		if e.client.SIsMember(e.ctx, cw, f.ID.String()).Val() {
			t.Fatal("the cancelled flow is still in the cancel set")
		}
		mustVerify(t, e)
	})
}

// TestUpdateAndAppendMovesControllerQueue: a whole-record write that
// changes a flow's controller queues it for the new controller, whether
// it stays running, becomes running, or is leased at the time (the old
// code left it on the old controller's queue, where no worker of the new
// controller could claim it, and the old one claimed a flow not its own).
func TestUpdateAndAppendMovesControllerQueue(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		claim := func(ctl string) *Flow {
			t.Helper()
			f, _, err := e.m.Claim(ctx, ctl, "w", time.Minute, WithClaimWait(0))
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
		write := func(f *Flow, ctl string, st FlowStatus) *Flow {
			t.Helper()
			f.ControllerID, f.Status = ctl, st
			if st != StatusWaiting {
				f.Wait = nil
			}
			nf, _, err := e.store.UpdateAndAppend(ctx, f, "moved", nil)
			if err != nil {
				t.Fatal(err)
			}
			return nf
		}
		// Running and queued: it moves queue.
		in := seedInput()
		in.ControllerID = "old"
		f := must(t, try(e.m.CreateMirrored(ctx, in)))
		write(f, "new", StatusRunning)
		if got := claim("old"); got != nil {
			t.Fatalf("the old controller claimed %s", got.ID)
		}
		if got := claim("new"); got == nil || got.ID != f.ID {
			t.Fatalf("the new controller did not get the flow: %v", got)
		}
		// Waiting, written back to running under a new controller.
		w := e.waitingFlow(t, WaitManual()) // controller from seedInput
		write(w, "newer", StatusRunning)
		if got := claim(seedInput().ControllerID); got != nil {
			t.Fatalf("the old controller claimed %s", got.ID)
		}
		if got := claim("newer"); got == nil || got.ID != w.ID {
			t.Fatalf("the new controller did not get the resumed flow: %v", got)
		}
		// Leased: the lease stays; once released the flow goes to the new
		// controller.
		in.ControllerID = "a"
		l := must(t, try(e.m.CreateMirrored(ctx, in)))
		_, lease, err := e.m.Claim(ctx, "a", "w", time.Minute, WithClaimWait(0))
		if err != nil || lease == nil {
			t.Fatalf("claim: %v", err)
		}
		l = must(t, try(e.m.Get(ctx, l.ID)))
		write(l, "b", StatusRunning)
		if err := e.m.Release(ctx, lease); err != nil {
			t.Fatal(err)
		}
		if got := claim("a"); got != nil {
			t.Fatalf("the old controller claimed %s", got.ID)
		}
		if got := claim("b"); got == nil || got.ID != l.ID {
			t.Fatalf("the new controller did not get the released flow: %v", got)
		}
		// Running to waiting under a new controller: on no queue.
		r := must(t, try(e.m.CreateMirrored(ctx, in)))
		r.Wait = []byte(`{"kind":"manual"}`)
		write(r, "c", StatusWaiting)
		if claim("a") != nil || claim("c") != nil {
			t.Fatal("a waiting flow was claimed")
		}
		requireVerifyClean(t, e.m)
	})
}

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
		other, err := NewRedisStore(e.client, e.b.storeOptions(WithPrefix(e.prefix+"-other"))...)
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

func TestPrune(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		old := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		must(t, try(e.m.RecordStepObservation(ctx, StepObservation{FlowID: old.ID, RunID: "r1", Status: StepSucceeded})))
		must(t, try(e.m.Finish(ctx, old.ID, nil)))
		oldCancelled := must(t, try(e.m.CreateManaged(ctx, seedInput())))
		must(t, try(e.m.Cancel(ctx, oldCancelled.ID)))
		running := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		e.clock.Advance(10 * 24 * time.Hour)
		recent := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		must(t, try(e.m.Fail(ctx, recent.ID, "x")))

		n := must(t, try(e.m.PruneTerminalFlows(ctx, 7*24*time.Hour)))
		if n != 2 {
			t.Fatalf("pruned %d, want 2", n)
		}
		for _, id := range []uuid.UUID{old.ID, oldCancelled.ID} {
			_, err := e.m.Get(ctx, id)
			wantErr(t, err, ErrNotFound)
			if evs := must(t, try(e.m.ListEvents(ctx, id, 10))); len(evs) != 0 {
				t.Fatalf("events left: %d", len(evs))
			}
		}
		must(t, try(e.m.Get(ctx, running.ID)))
		must(t, try(e.m.Get(ctx, recent.ID)))
		// Nothing of the pruned flows is left: no key names them and no
		// index holds them.
		for k, v := range e.dump() {
			for _, id := range []uuid.UUID{old.ID, oldCancelled.ID} {
				if strings.Contains(k, id.String()) || strings.Contains(v, id.String()) {
					t.Fatalf("pruned flow %s still in %s", id, k)
				}
			}
		}
		if owned := must(t, try(e.m.ListByOwner(ctx, seedInput().OwnerSessionKey))); len(owned) != 2 {
			t.Fatalf("owner index has %d", len(owned))
		}
		if n := must(t, try(e.m.PruneTerminalFlows(ctx, 7*24*time.Hour))); n != 0 {
			t.Fatalf("second prune %d", n)
		}
	})
}

// TestPruneRemovesEarlyEvents: pruning a flow removes the early events
// kept for it (and their entries in the shard's early-event index), so a flow made
// again with the same idempotency key (same id) does not take the pruned
// flow's reply on its first wait; Verify reports an early-event list left of a flow
// that no longer exists, and its repair deletes it.
func TestPruneRemovesEarlyEvents(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		in := seedInput()
		in.IdempotencyKey = "job-7"
		f := must(t, try(e.m.CreateManaged(ctx, in)))
		must(t, try(e.m.StartRunning(ctx, f.ID)))
		must(t, try(e.m.TryResumeExternal(ctx, f.ID, "job", "7", "old reply")))
		if n := e.countEarly(t); n != 1 {
			t.Fatalf("%d kept events, want 1", n)
		}
		must(t, try(e.m.Cancel(ctx, f.ID)))
		e.clock.Advance(2 * time.Hour) // the event is kept for 24 h
		if n := must(t, try(e.m.PruneTerminalFlows(ctx, time.Hour))); n != 1 {
			t.Fatalf("pruned %d, want 1", n)
		}
		if n := e.countEarly(t); n != 0 {
			t.Fatalf("%d kept events after the prune, want 0", n)
		}
		for k := range e.dump() {
			if strings.Contains(k, f.ID.String()) {
				t.Errorf("pruned flow's key %s is left", k)
			}
		}
		again := must(t, try(e.m.CreateManaged(ctx, in)))
		if again.ID != f.ID || again.Revision != 0 {
			t.Fatalf("re-create: %s revision %d, want a new %s", again.ID, again.Revision, f.ID)
		}
		must(t, try(e.m.StartRunning(ctx, again.ID)))
		w := must(t, try(e.m.SetWaiting(ctx, again.ID, WaitExternalEvent("job", "7"))))
		if w.Status != StatusWaiting {
			t.Fatalf("the new flow took the pruned flow's reply: %s %s", w.Status, w.State)
		}
		requireVerifyClean(t, e.m)

		// An early-event list left of a flow that is gone (as an older prune left
		// it) is reported, and the repair deletes it.
		g := e.runningFlow(t)
		must(t, try(e.m.TryResumeExternal(ctx, g.ID, "job", "8", "x")))
		list := e.store.keys.earlyFlow(g.ID)
		must(t, try(e.m.Cancel(ctx, g.ID)))
		e.client.Del(ctx, e.store.keys.flow(g.ID), e.store.keys.events(g.ID))
		for _, st := range allStatuses {
			e.client.ZRem(ctx, e.store.keys.status(e.store.keys.shardOf(g.ID), st), g.ID.String())
		}
		e.client.ZRem(ctx, e.store.keys.owner(e.store.keys.shardOf(g.ID), in.OwnerSessionKey), g.ID.String())
		e.client.ZRem(ctx, e.store.keys.controllerIndex(e.store.keys.shardOf(g.ID), g.ControllerID), g.ID.String())
		rep := must(t, try(e.m.Verify(ctx)))
		if len(rep.Problems) != 1 || rep.Problems[0].Kind != fsck.OrphanKey || rep.Problems[0].Key != list || rep.Problems[0].FlowID != g.ID.String() {
			t.Fatalf("problems %+v, want one orphan_key %s", rep.Problems, list)
		}
		rep = must(t, try(e.m.Verify(ctx, fsck.WithRepair())))
		if len(rep.Problems) != 1 || !rep.Problems[0].Repaired {
			t.Fatalf("repair: %+v", rep.Problems)
		}
		if n := e.client.Exists(ctx, list).Val(); n != 0 {
			t.Fatal("the repair left the list")
		}
		if n := e.countEarly(t); n != 0 {
			t.Fatalf("%d kept events after the repair, want 0", n)
		}
		requireVerifyClean(t, e.m)
	})
}

// TestUpdateStateLeanReply: a lean UpdateState (WithoutState) returns
// the flow as Get then reads it, every record field decoded (a child's
// parent and key, its concurrency and priority, a wait), without its
// state and attributes; the patch (keys out of order, a duplicate: the
// last wins) lands as a full call's would.
func TestUpdateStateLeanReply(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		parent := must(t, try(e.m.CreateManaged(ctx, seedInput())))
		in := seedInput()
		in.Attributes = map[string]string{"customer": "acme"}
		in.Concurrency = []string{"tenant:acme", "model:x"}
		in.Priority = 3
		f := must(t, try(e.m.StartChild(ctx, parent.ID, ChildInput{Key: "k-1", Flow: in})))
		check := func(lean *Flow) {
			t.Helper()
			full := must(t, try(e.m.Get(ctx, f.ID)))
			want := *full
			want.State, want.Attributes = nil, nil
			if !reflect.DeepEqual(*lean, want) {
				t.Fatalf("lean reply\n%+v\nGet without state and attributes\n%+v", *lean, want)
			}
			if lean.ParentID != parent.ID || lean.ChildKey != "k-1" || lean.Priority != 3 || len(lean.Concurrency) != 2 {
				t.Fatalf("lean reply lost record fields: %+v", *lean)
			}
			var state map[string]json.RawMessage
			if err := json.Unmarshal(full.State, &state); err != nil {
				t.Fatal(err)
			}
			if string(state["b"]) != `[1,"x"]` || string(state["a"]) != `2` || string(state["total"]) != `31` {
				t.Fatalf("state after the lean patch: %s", full.State)
			}
		}
		patch := json.RawMessage(`{"b":[1,"x"],"a":{"z":null},"a":2}`)
		lean := must(t, try(e.m.UpdateState(ctx, f.ID, patch, "next-step", WithoutState())))
		if lean.CurrentStep != "next-step" {
			t.Fatalf("lean step %q", lean.CurrentStep)
		}
		check(lean)
		must(t, try(e.m.SetWaiting(ctx, f.ID, WaitExternalEvent("reply", "job-1"))))
		lean = must(t, try(e.m.UpdateState(ctx, f.ID, map[string]any{"b": []any{1, "x"}}, "", WithoutState())))
		if lean.Status != StatusWaiting || len(lean.Wait) == 0 {
			t.Fatalf("lean reply of a waiting flow: %+v", *lean)
		}
		check(lean)
	})
}

// BenchmarkUpdateState measures one UpdateState on the real Redis
// (TASKFLOW_TEST_REDIS_URL, default 127.0.0.1:6379; skipped when it does
// not answer) on one flow with a 5-key state: a json.RawMessage patch and
// a map[string]any patch with WithoutState (the record-only reply), and
// the default reply (the whole flow). allocs/op and cpu-us/op (this
// process's user+system CPU time: the client's side, go-redis and the
// runtime included, Redis's not) are the client's cost of a call; ns/op
// adds the round trip and Redis's time.
//
//	go test -run x -bench UpdateState -benchmem .
func BenchmarkUpdateState(b *testing.B) {
	opts, err := realRedisOptions()
	if err != nil {
		b.Skipf("real Redis: %v", err)
	}
	client := redis.NewClient(opts)
	defer client.Close()
	ctx := context.Background()
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	err = client.Ping(pctx).Err()
	cancel()
	if err != nil {
		b.Skipf("real Redis at %s does not answer: %v", opts.Addr, err)
	}
	prefix := randomPrefix()
	defer func() { _ = testbackend.DeleteKeys(ctx, client, prefix) }()
	st, err := NewRedisStore(client, WithPrefix(prefix))
	if err != nil {
		b.Fatal(err)
	}
	if err := st.LoadScripts(ctx); err != nil {
		b.Fatal(err)
	}
	m := NewManager(st)
	f, err := m.CreateMirrored(ctx, CreateManagedInput{
		ControllerID: "kate/inbox-triage", Goal: "triage the inbox of kate@example.com",
		OwnerSessionKey: "agent:kate:session:s-1", RequesterOrigin: "user:kate", CurrentStep: "fetch",
		State: json.RawMessage(`{"customer":"acme-corp","n":"000000","priority":3,"tags":["inbox","triage"],"thread_id":"t-0000001"}`),
	})
	if err != nil {
		b.Fatal(err)
	}
	// The floor: a bare EVALSHA that returns at once, the client's cost of
	// any script call through go-redis.
	floor := redis.NewScript("return 1")
	if err := floor.Load(ctx, client).Err(); err != nil {
		b.Fatal(err)
	}
	b.Run("floor", func(b *testing.B) {
		b.ReportAllocs()
		cpu0, n := processCPU(), 0
		for b.Loop() {
			if err := floor.EvalSha(ctx, client, nil).Err(); err != nil {
				b.Fatal(err)
			}
			n++
		}
		b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(n), "cpu-us/op")
	})
	raw := json.RawMessage(`{"n":"000042","priority":2}`)
	obj := map[string]any{"n": "000042", "priority": 2}
	for _, c := range []struct {
		name  string
		patch any
		opts  []MutationOption
	}{
		{"raw/lean", raw, []MutationOption{WithoutState()}},
		{"map/lean", obj, []MutationOption{WithoutState()}},
		{"raw/full", raw, nil},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0, n := processCPU(), 0
			for b.Loop() {
				if _, err := m.UpdateState(ctx, f.ID, c.patch, "", c.opts...); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(n), "cpu-us/op")
		})
	}
}

// TestCreateReplyIsTheStoredFlow: a create answers with the flow as it
// stored it. create.lua builds its full reply from what it wrote instead
// of reading the hash back; the reply's field/value pairs are exactly the
// hash's (HGETALL), and the Flow it decodes to is what Get reads, for
// managed and mirrored creates of every shape of input: object and
// non-object state, optional fields set or not, attributes, concurrency
// keys and priority, an idempotency key (its repeat too), a trace parent,
// a parent, and a state past one HSET's chunk of pairs.
func TestCreateReplyIsTheStoredFlow(t *testing.T) {
	tp := &observe.Observer{TraceParent: func(context.Context) string { return testTraceParent }}
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		big := map[string]int{}
		for i := 0; i < 1000; i++ {
			big[fmt.Sprintf("k%04d", i)] = i
		}
		full := seedInput()
		full.Attributes = map[string]string{"region": "eu", "tier": "gold", "empty.ok": "x"}
		full.Concurrency = []string{"tenant:a", "db"}
		full.Priority = 3
		cases := map[string]CreateManagedInput{
			"seed":        seedInput(),
			"minimal":     {ControllerID: "c", Goal: "g", OwnerSessionKey: "o"},
			"empty":       {ControllerID: "c", Goal: "g", OwnerSessionKey: "o", State: map[string]any{}},
			"array":       {ControllerID: "c", Goal: "g", OwnerSessionKey: "o", State: json.RawMessage(`[1,"a",{"b":null}]`)},
			"string":      {ControllerID: "c", Goal: "g", OwnerSessionKey: "o", State: "just text"},
			"null":        {ControllerID: "c", Goal: "g", OwnerSessionKey: "o", State: json.RawMessage(`null`)},
			"escapes":     {ControllerID: "c", Goal: "g", OwnerSessionKey: "o", State: map[string]any{"a\"b": 1, "tab\there": []int{1}, "☃": "x"}},
			"big":         {ControllerID: "c", Goal: "g", OwnerSessionKey: "o", State: big},
			"attrs+gate":  full,
			"priority":    {ControllerID: "c", Goal: "g", OwnerSessionKey: "o", Priority: 9},
			"idempotency": {ControllerID: "c", Goal: "g", OwnerSessionKey: "o", IdempotencyKey: "order-17", State: map[string]int{"n": 1}},
		}
		for name, in := range cases {
			for _, mirrored := range []bool{false, true} {
				what := fmt.Sprintf("%s (mirrored %v)", name, mirrored)
				if in.IdempotencyKey != "" {
					in.IdempotencyKey += fmt.Sprint(mirrored)
				}
				// The public call: its Flow, then a repeat's, against Get.
				create := e.m.CreateManaged
				if mirrored {
					create = e.m.CreateMirrored
				}
				f := must(t, try(create(ctx, in)))
				sameAsGet(t, e, f, what)
				if in.IdempotencyKey != "" {
					again := must(t, try(create(ctx, in)))
					if !reflect.DeepEqual(again, f) {
						t.Fatalf("%s: the repeat answered %+v, the create %+v", what, again, f)
					}
				}
				// The script's reply itself against the hash.
				in.IdempotencyKey = ""
				call, err := e.store.createCall(ctx, uuid.New(), in, mirrored, childLink{})
				if err != nil {
					t.Fatal(err)
				}
				_, arr, err := e.store.runFlowScript(ctx, call.script, call.id, call.keys, call.args)
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				got, stored := pairsToMap(arr[0]), e.client.HGetAll(ctx, call.keys[0]).Val()
				if n := len(arr[0].([]any)); n != 2*len(stored) {
					t.Errorf("%s: the reply has %d values for the hash's %d fields", what, n, len(stored))
				}
				if !reflect.DeepEqual(got, stored) {
					t.Fatalf("%s: the reply's fields differ from the hash's:\nreply %v\nhash  %v", what, got, stored)
				}
			}
		}
		// Children: mirrored creates with a parent, its key and policy.
		parent := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		kids := must(t, try(e.m.StartChildren(ctx, parent.ID, []ChildInput{
			{Key: "a", Flow: seedInput()},
			{Key: "b", Flow: CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o", State: []int{1}}, OnParentClose: ParentCloseAbandon},
		})))
		for _, k := range kids {
			if k.ParentID != parent.ID {
				t.Fatalf("child %s: parent %s", k.ID, k.ParentID)
			}
			sameAsGet(t, e, k, "child "+k.ChildKey)
		}
		mustVerify(t, e)
	}, WithObserver(tp))
}

// sameAsGet fails the test when Get reads flow f otherwise.
func sameAsGet(t *testing.T, e *env, f *Flow, what string) {
	t.Helper()
	got := must(t, try(e.m.Get(e.ctx, f.ID)))
	if !reflect.DeepEqual(got, f) {
		t.Fatalf("%s: the create answered\n%+v\nGet reads\n%+v", what, f, got)
	}
}

// TestMirroredCreateLog: a mirrored create pushes its two events (created
// at revision 0, started at revision 1) in one step and trims the log
// after both, as appending them one by one would: with room for both it
// keeps both, with a cap of one event or a byte budget below both it
// keeps the started one alone; 'eb' is the log's size, 'seq' 2, and a
// watcher gets both events, numbered 1 and 2, in order.
func TestMirroredCreateLog(t *testing.T) {
	for _, c := range []struct {
		name   string
		limits Limits
		kept   int
	}{
		{"default", Limits{}, 2},
		{"one event", Limits{EventsPerFlow: 1}, 1},
		{"small budget", Limits{EventBytes: 100}, 1},
		{"budget for both", Limits{EventBytes: 160}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, e *env) {
				ctx, cancel := context.WithCancel(e.ctx)
				defer cancel()
				all := must(t, try(e.m.WatchAll(ctx)))
				f := must(t, try(e.m.CreateMirrored(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o", CurrentStep: "s"})))
				entries, size, eb := auditLog(t, e, f.ID)
				if len(entries) != c.kept || eb != size {
					t.Fatalf("the log holds %d entries of %d bytes, 'eb' says %d; want %d entries", len(entries), size, eb, c.kept)
				}
				evs := must(t, try(e.m.ListEvents(e.ctx, f.ID, 10)))
				want := []struct {
					id   string
					kind EventKind
					rev  int64
				}{{"2", EventStarted, 1}, {"1", EventCreated, 0}}[:c.kept]
				for i, w := range want {
					if ev := evs[i]; ev.ID != w.id || ev.Kind != w.kind || ev.Revision != w.rev {
						t.Fatalf("event %d: %+v, want %+v", i, ev, w)
					}
				}
				fields := e.client.HGetAll(e.ctx, e.store.keys.flow(f.ID)).Val()
				if fields["seq"] != "2" || fields["rev"] != "1" || strings.Count(fields["calls"], ":") != 1 {
					t.Fatalf("seq %q, rev %q, call memory %q", fields["seq"], fields["rev"], fields["calls"])
				}
				for i, w := range []EventKind{EventCreated, EventStarted} {
					select {
					case ev := <-all:
						if ev.FlowID != f.ID || ev.Kind != w || ev.ID != itoa(i+1) || ev.Revision != int64(i) {
							t.Fatalf("announcement %d: %+v, want %s", i, ev, w)
						}
					case <-time.After(3 * time.Second):
						t.Fatalf("no announcement %d", i)
					}
				}
				mustVerify(t, e)
			}, WithLimits(c.limits))
		})
	}
}

// TestCreateOverAHashWithoutStatus: a create refuses an id whose hash
// exists but holds no 'status' (no flow the library wrote: a hand edit)
// as it refuses a taken id, writing nothing: ErrAlreadyExists, or with an
// idempotency key naming that id, ErrIdempotencyConflict.
func TestCreateOverAHashWithoutStatus(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		in := CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o", IdempotencyKey: "k"}
		keyed, err := e.store.createCall(ctx, uuid.Nil, in, true, childLink{})
		if err != nil {
			t.Fatal(err)
		}
		plain := uuid.New()
		must(t, try(e.m.CreateMirrored(ctx, seedInput()))) // the layout, and a flow besides
		for _, id := range []uuid.UUID{keyed.id, plain} {
			if err := e.client.HSet(ctx, e.store.keys.flow(id), "note", "by hand").Err(); err != nil {
				t.Fatal(err)
			}
		}
		before := e.dump()
		for _, mirrored := range []bool{false, true} {
			_, err := e.store.createWithID(ctx, plain, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"}, mirrored)
			wantErr(t, err, ErrAlreadyExists)
			_, err = e.store.create(ctx, in, mirrored)
			wantErr(t, err, ErrIdempotencyConflict)
		}
		e.sameDump(t, before, "a create over a hash without status")
	})
}
