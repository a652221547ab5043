package taskflow

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// mustVerify fails the test when Verify finds a problem.
func mustVerify(t *testing.T, e *env) {
	t.Helper()
	rep, err := e.store.Verify(e.ctx)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !rep.OK() {
		t.Fatalf("Verify found problems: %+v", rep.Problems)
	}
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

// The step_observed event names the step's runtime, managed or mirrored.
func TestStepObservedEventNamesRuntime(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f, err := e.m.CreateMirrored(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.store.InsertStep(e.ctx, &FlowStep{FlowID: f.ID, RunID: "m1", Runtime: RuntimeManaged, Task: "t", Status: StepPending}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			run  string
			want StepRuntime
		}{{"m1", RuntimeManaged}, {"new", RuntimeMirrored}} {
			st, err := e.m.RecordStepObservation(e.ctx, StepObservation{FlowID: f.ID, RunID: c.run, Task: "t", Status: StepRunning})
			if err != nil {
				t.Fatal(err)
			}
			if st.Runtime != c.want {
				t.Fatalf("step %s: runtime %q, want %q", c.run, st.Runtime, c.want)
			}
			evs, err := e.m.ListEvents(e.ctx, f.ID, 1)
			if err != nil || len(evs) != 1 || evs[0].Kind != EventStepObserved {
				t.Fatalf("events: %+v %v", evs, err)
			}
			var p struct {
				RunID   string `json:"run_id"`
				Runtime string `json:"runtime"`
				Status  string `json:"status"`
			}
			if err := json.Unmarshal(evs[0].Payload, &p); err != nil {
				t.Fatalf("payload %s: %v", evs[0].Payload, err)
			}
			if p.Runtime != string(c.want) || p.RunID != c.run || p.Status != string(StepRunning) {
				t.Fatalf("step %s: payload %s, want runtime %q", c.run, evs[0].Payload, c.want)
			}
		}
		mustVerify(t, e)
	})
}

// SetWaiting keeps the caller's wait byte for byte, indexes it, and keeps
// a wait of an unknown kind as a manual one.
func TestSetWaitingKeepsWaitAsGiven(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		newRunning := func() *Flow {
			f, err := e.m.CreateMirrored(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
		paris := time.FixedZone("CET", 3600)
		at := e.clock.Now().Add(time.Minute).In(paris)
		timer := `{"kind":"timer","at":"` + at.Format(time.RFC3339Nano) + `","reason":"cool down","approver":{"name":"Ana"}}`
		f := newRunning()
		got, err := e.m.SetWaiting(e.ctx, f.ID, json.RawMessage(timer))
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Wait) != timer {
			t.Fatalf("returned wait %s, want %s", got.Wait, timer)
		}
		read, err := e.m.Get(e.ctx, f.ID)
		if err != nil || string(read.Wait) != timer {
			t.Fatalf("stored wait %s (%v), want %s", read.Wait, err, timer)
		}
		evs, _ := e.m.ListEvents(e.ctx, f.ID, 1)
		if len(evs) != 1 || string(evs[0].Payload) != `{"wait":`+timer+`}` {
			t.Fatalf("waiting event %+v", evs)
		}
		// Spaces after the colons do not hide the kind from the engine.
		spaced := `{"kind": "timer", "at": "` + at.Format(time.RFC3339) + `"}`
		f2 := newRunning()
		if _, err := e.m.SetWaiting(e.ctx, f2.ID, []byte(spaced)); err != nil {
			t.Fatal(err)
		}
		if r, _ := e.m.Get(e.ctx, f2.ID); string(r.Wait) != spaced {
			t.Fatalf("stored wait %s, want %s", r.Wait, spaced)
		}
		// An unknown kind behaves as a manual wait.
		odd := `{"kind":"human_review","queue":"legal"}`
		f3 := newRunning()
		if _, err := e.m.SetWaiting(e.ctx, f3.ID, json.RawMessage(odd)); err != nil {
			t.Fatalf("unknown kind refused: %v", err)
		}
		mustVerify(t, e)
		rep := NewWaitEngine(e.m).TickAt(e.ctx, at.Add(time.Second))
		if rep.Resumed != 2 || rep.Err != nil {
			t.Fatalf("tick: %+v", rep)
		}
		if r, _ := e.m.Get(e.ctx, f3.ID); r.Status != StatusWaiting || string(r.Wait) != odd {
			t.Fatalf("unknown-kind wait after tick: %s %s", r.Status, r.Wait)
		}
		if _, err := e.m.Resume(e.ctx, f3.ID, nil); err != nil {
			t.Fatalf("explicit resume of an unknown-kind wait: %v", err)
		}
		// Still refused: not an object, no kind, a timer without a time.
		f4 := newRunning()
		for _, bad := range []string{`[1]`, `{"at":"2030-01-01T00:00:00Z"}`, `{"kind":""}`, `{"kind":"timer"}`, `{"kind":"timer","at":"soon"}`, `{"kind":"external_event","topic":"t"}`} {
			if _, err := e.m.SetWaiting(e.ctx, f4.ID, json.RawMessage(bad)); err == nil || !strings.Contains(err.Error(), "invalid data") {
				t.Fatalf("wait %s: err %v, want invalid data", bad, err)
			}
		}
		mustVerify(t, e)
	})
}
