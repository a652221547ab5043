package taskflow

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
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
