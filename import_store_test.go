package taskflow

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// importedFlow builds a flow record as an importer would hand it over.
func importedFlow(e *env, status FlowStatus, wait json.RawMessage, cancel bool) *Flow {
	created := e.clock.Now().Add(-48 * time.Hour)
	return &Flow{
		ID: uuid.New(), ControllerID: "legacy/ctl", Goal: "carried over",
		OwnerSessionKey: "agent:legacy:session:1", RequesterOrigin: "user-9",
		CurrentStep: "phase-2", State: json.RawMessage(`{"a":1,"nested":{"b":[1,2]}}`),
		Wait: wait, Status: status, CancelRequested: cancel, Revision: 7,
		CreatedAt: created, UpdatedAt: created.Add(90 * time.Minute),
	}
}

func importedSteps(f *Flow) []*FlowStep {
	return []*FlowStep{
		{ID: uuid.New(), FlowID: f.ID, Runtime: RuntimeManaged, RunID: "run-b", Task: "fetch", Status: StepSucceeded,
			Result: json.RawMessage(`{"ok":true}`), CreatedAt: f.CreatedAt, UpdatedAt: f.CreatedAt.Add(time.Minute)},
		{ID: uuid.New(), Runtime: RuntimeMirrored, ChildSessionKey: "agent:c:session:2", RunID: "run-a",
			Task: "summarise", Status: StepRunning, CreatedAt: f.CreatedAt.Add(2 * time.Minute), UpdatedAt: f.CreatedAt.Add(3 * time.Minute)},
	}
}

func importedEvents(f *Flow, n int) []*FlowEvent {
	out := make([]*FlowEvent, n)
	for i := range out {
		out[i] = &FlowEvent{Kind: []EventKind{EventCreated, EventStarted, EventStateUpdated}[min(i, 2)],
			Payload: json.RawMessage(`{"i":` + strconv.Itoa(i) + `}`), At: f.CreatedAt.Add(time.Duration(i) * time.Second)}
	}
	return out
}

// checkInserted compares what the store returns with what was inserted.
func checkInserted(t *testing.T, e *env, want *Flow, steps []*FlowStep, events []*FlowEvent) {
	t.Helper()
	got := must(t, try(e.store.get(e.ctx, want.ID)))
	w := *want
	w.CreatedAt, w.UpdatedAt = w.CreatedAt.UTC().Truncate(time.Millisecond), w.UpdatedAt.UTC().Truncate(time.Millisecond)
	g := *got
	if string(g.State) != string(w.State) {
		t.Errorf("state %s, want %s", g.State, w.State)
	}
	if w.Wait != nil {
		gw, err1 := ParseWaitCondition(g.Wait)
		ww, err2 := ParseWaitCondition(w.Wait)
		if err1 != nil || err2 != nil || !gw.At.Equal(ww.At) || gw.Kind != ww.Kind || gw.Topic != ww.Topic || gw.CorrelationID != ww.CorrelationID {
			t.Errorf("wait %s, want %s", g.Wait, w.Wait)
		}
	} else if g.Wait != nil {
		t.Errorf("wait %s, want none", g.Wait)
	}
	g.State, w.State, g.Wait, w.Wait = nil, nil, nil, nil
	if !reflect.DeepEqual(g, w) {
		t.Errorf("flow\n got %+v\nwant %+v", g, w)
	}
	gotSteps := must(t, try(e.store.listSteps(e.ctx, want.ID)))
	if len(gotSteps) != len(steps) {
		t.Fatalf("%d steps, want %d", len(gotSteps), len(steps))
	}
	for i, st := range steps {
		g := gotSteps[i]
		if g.ID != st.ID || g.FlowID != want.ID || g.RunID != st.RunID || g.Task != st.Task || g.Status != st.Status ||
			g.Runtime != st.Runtime || g.ChildSessionKey != st.ChildSessionKey || string(g.Result) != string(st.Result) ||
			!g.CreatedAt.Equal(st.CreatedAt.Truncate(time.Millisecond)) || !g.UpdatedAt.Equal(st.UpdatedAt.Truncate(time.Millisecond)) {
			t.Errorf("step %d: got %+v, want %+v", i, g, st)
		}
	}
	gotEvents := must(t, try(e.store.listEvents(e.ctx, want.ID, 100000)))
	if len(gotEvents) != len(events) {
		t.Fatalf("%d events, want %d", len(gotEvents), len(events))
	}
	for i, ev := range events {
		g := gotEvents[len(gotEvents)-1-i] // newest first
		if g.ID != strconv.Itoa(i+1) || g.Kind != ev.Kind || string(g.Payload) != string(ev.Payload) ||
			!g.At.Equal(ev.At.UTC().Truncate(time.Millisecond)) || g.Revision != want.Revision {
			t.Errorf("event %d: got %+v, want %+v", i, g, ev)
		}
	}
}

func wantVerifyClean(t *testing.T, e *env, flows int) {
	t.Helper()
	rep := must(t, try(e.store.verify(e.ctx)))
	if !rep.OK() || rep.Flows != flows {
		t.Fatalf("verify: %d flows (want %d), problems %+v", rep.Flows, flows, rep.Problems)
	}
}

func TestInsertFlowEveryStatus(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		due := e.clock.Now().Add(-time.Minute)
		later := e.clock.Now().Add(time.Hour)
		cases := []struct {
			name   string
			status FlowStatus
			wait   string
			cancel bool
		}{
			{"created", StatusCreated, "", false},
			{"running", StatusRunning, "", false},
			{"timer due", StatusWaiting, `{"kind":"timer","at":"` + due.Format(time.RFC3339Nano) + `"}`, false},
			{"timer later", StatusWaiting, `{"kind":"timer","at":"` + later.Format(time.RFC3339Nano) + `"}`, false},
			{"external", StatusWaiting, `{"kind":"external_event","topic":"mail","correlation_id":"m-7"}`, false},
			{"manual cancel", StatusWaiting, `{"kind":"manual"}`, true},
			{"finished", StatusFinished, "", false},
			{"failed", StatusFailed, "", false},
			{"cancelled", StatusCancelled, "", true},
		}
		flows := map[string]*Flow{}
		for i, c := range cases {
			var wait json.RawMessage
			if c.wait != "" {
				wait = json.RawMessage(c.wait)
			}
			f := importedFlow(e, c.status, wait, c.cancel)
			steps := importedSteps(f)
			events := importedEvents(f, i+1)
			got, err := e.store.InsertFlow(e.ctx, Import{Flow: f, Steps: steps, Events: events})
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if got.Revision != f.Revision || got.Status != f.Status {
				t.Fatalf("%s: returned %+v", c.name, got)
			}
			checkInserted(t, e, f, steps, events)
			flows[c.name] = f
		}
		wantVerifyClean(t, e, len(cases))

		// The same id again: refused, nothing changes.
		before := e.dump()
		again := importedFlow(e, StatusCreated, nil, false)
		again.ID = flows["running"].ID
		if _, err := e.store.InsertFlow(e.ctx, Import{Flow: again}); !errors.Is(err, ErrAlreadyExists) {
			t.Fatalf("second insert: %v, want ErrAlreadyExists", err)
		}
		if after := e.dump(); !reflect.DeepEqual(before, after) {
			t.Fatal("a refused insert changed the flow space")
		}

		// The engine and the fleet take the inserted flows over.
		rep := NewWaitEngine(e.m).TickAt(e.ctx, e.clock.Now())
		if rep.Resumed != 1 || rep.Cancelled != 1 || rep.Errors != 0 {
			t.Fatalf("tick: %+v", rep)
		}
		if f := must(t, try(e.m.Get(e.ctx, flows["timer due"].ID))); f.Status != StatusRunning {
			t.Fatalf("due timer: %s", f.Status)
		}
		if f := must(t, try(e.m.Get(e.ctx, flows["manual cancel"].ID))); f.Status != StatusCancelled {
			t.Fatalf("cancel-requested wait: %s", f.Status)
		}
		if f := must(t, try(e.m.Get(e.ctx, flows["timer later"].ID))); f.Status != StatusWaiting {
			t.Fatalf("timer not due: %s", f.Status)
		}
		f := must(t, try(e.m.TryResumeExternal(e.ctx, flows["external"].ID, "mail", "m-7", map[string]int{"n": 1})))
		if f == nil || f.Status != StatusRunning || f.Revision != 8 {
			t.Fatalf("external resume: %+v", f)
		}
		claimed, lease, err := e.m.Claim(e.ctx, "legacy/ctl", "w1", time.Minute, WithClaimWait(0))
		if err != nil || claimed == nil || lease == nil {
			t.Fatalf("claim of an inserted running flow: %v %v", claimed, err)
		}
		t.Cleanup(func() { _ = e.m.Close() })
		wantVerifyClean(t, e, len(cases))
	})
}

func TestInsertFlowRefusesBadInput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		// One good flow, so "nothing changed" is a real comparison.
		good := importedFlow(e, StatusCreated, nil, false)
		if err := e.store.CheckInsert(Import{Flow: good, Steps: importedSteps(good)}); err != nil {
			t.Fatalf("CheckInsert of a good flow: %v", err)
		}
		must(t, try(e.store.InsertFlow(e.ctx, Import{Flow: good})))
		before := e.dump()
		cases := map[string]func(f *Flow) Import{
			"nil id":            func(f *Flow) Import { f.ID = uuid.Nil; return Import{} },
			"unknown status":    func(f *Flow) Import { f.Status = "paused"; return Import{} },
			"no owner":          func(f *Flow) Import { f.OwnerSessionKey = " "; return Import{} },
			"negative revision": func(f *Flow) Import { f.Revision = -1; return Import{} },
			"no times":          func(f *Flow) Import { f.CreatedAt = time.Time{}; return Import{} },
			"wait not waiting":  func(f *Flow) Import { f.Wait = json.RawMessage(`{"kind":"manual"}`); return Import{} },
			"waiting no wait":   func(f *Flow) Import { f.Status = StatusWaiting; return Import{} },
			"bad wait": func(f *Flow) Import {
				f.Status, f.Wait = StatusWaiting, json.RawMessage(`{"topic":"t"}`)
				return Import{}
			},
			"bad state": func(f *Flow) Import { f.State = json.RawMessage(`{"a":`); return Import{} },
			"bad step": func(f *Flow) Import {
				return Import{Steps: []*FlowStep{{RunID: "r", Runtime: "robot", Status: StepPending}}}
			},
			"dup run id": func(f *Flow) Import {
				st := &FlowStep{RunID: "r", Runtime: RuntimeManaged, Status: StepPending}
				st2 := *st
				return Import{Steps: []*FlowStep{st, &st2}}
			},
			"step of another flow": func(f *Flow) Import {
				return Import{Steps: []*FlowStep{{FlowID: uuid.New(), RunID: "r", Runtime: RuntimeManaged, Status: StepPending}}}
			},
			"event without kind": func(f *Flow) Import {
				return Import{Events: []*FlowEvent{{Payload: json.RawMessage(`{}`)}}}
			},
			"event bad payload": func(f *Flow) Import {
				return Import{Events: []*FlowEvent{{Kind: "x", Payload: json.RawMessage(`nope`)}}}
			},
			"too many steps": func(f *Flow) Import {
				steps := make([]*FlowStep, maxInsertSteps+1)
				for i := range steps {
					steps[i] = &FlowStep{RunID: fmt.Sprint(i), Runtime: RuntimeManaged, Status: StepPending}
				}
				return Import{Steps: steps}
			},
		}
		for name, spoil := range cases {
			f := importedFlow(e, StatusCreated, nil, false)
			imp := spoil(f)
			imp.Flow = f
			_, err := e.store.InsertFlow(e.ctx, imp)
			if !errors.Is(err, ErrInvalidData) && !errors.Is(err, ErrDuplicateStep) {
				t.Errorf("%s: %v, want ErrInvalidData", name, err)
			}
			if cerr := e.store.CheckInsert(imp); cerr == nil || cerr.Error() != err.Error() {
				t.Errorf("%s: CheckInsert says %v, InsertFlow %v", name, cerr, err)
			}
		}
		if _, err := e.store.InsertFlow(e.ctx, Import{}); !errors.Is(err, ErrInvalidData) {
			t.Errorf("nil flow: %v", err)
		}
		if after := e.dump(); !reflect.DeepEqual(before, after) {
			t.Fatal("a refused insert changed the flow space")
		}
	})
}

func TestInsertFlowEventCap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := importedFlow(e, StatusFinished, nil, false)
		events := importedEvents(f, 25)
		must(t, try(e.store.InsertFlow(e.ctx, Import{Flow: f, Events: events})))
		got := must(t, try(e.store.listEvents(e.ctx, f.ID, 100)))
		if len(got) != 10 || got[0].ID != "25" || got[9].ID != "16" || string(got[9].Payload) != `{"i":15}` {
			t.Fatalf("capped log: %d events, newest %s, oldest %s %s", len(got), got[0].ID, got[len(got)-1].ID, got[len(got)-1].Payload)
		}
		// Without events, one "imported" event carries the revision.
		g := importedFlow(e, StatusCreated, nil, false)
		must(t, try(e.store.InsertFlow(e.ctx, Import{Flow: g})))
		evs := must(t, try(e.store.listEvents(e.ctx, g.ID, 10)))
		if len(evs) != 1 || evs[0].Kind != EventImported || evs[0].Revision != 7 || !evs[0].At.Equal(g.UpdatedAt.Truncate(time.Millisecond)) {
			t.Fatalf("default event: %+v", evs)
		}
		wantVerifyClean(t, e, 2)
	}, WithLimits(Limits{EventsPerFlow: 10}))
}

func TestAppendEventAt(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := must(t, try(e.m.CreateMirrored(e.ctx, seedInput())))
		at := time.Date(2026, 5, 1, 10, 0, 0, 123456789, time.UTC)
		ev := must(t, try(e.store.AppendEventAt(e.ctx, f.ID, "note", map[string]string{"x": "y"}, at)))
		if ev.ID != "3" || ev.Kind != "note" || ev.Revision != 1 || !ev.At.Equal(at.Truncate(time.Millisecond)) || string(ev.Payload) != `{"x":"y"}` {
			t.Fatalf("appended %+v", ev)
		}
		got := must(t, try(e.store.listEvents(e.ctx, f.ID, 1)))
		if !reflect.DeepEqual(got[0], ev) {
			t.Fatalf("listed %+v, appended %+v", got[0], ev)
		}
		if g := must(t, try(e.store.get(e.ctx, f.ID))); g.Revision != 1 || !g.UpdatedAt.Equal(f.UpdatedAt) {
			t.Fatalf("the record changed: %+v", g)
		}
		before := e.dump()
		for name, err := range map[string]error{
			"unknown flow": errOf(e.store.AppendEventAt(e.ctx, uuid.New(), "k", nil, at)),
			"no kind":      errOf(e.store.AppendEventAt(e.ctx, f.ID, "", nil, at)),
			"no time":      errOf(e.store.AppendEventAt(e.ctx, f.ID, "k", nil, time.Time{})),
			"bad payload":  errOf(e.store.AppendEventAt(e.ctx, f.ID, "k", json.RawMessage(`{`), at)),
		} {
			want := ErrInvalidData
			if name == "unknown flow" {
				want = ErrNotFound
			}
			if !errors.Is(err, want) {
				t.Errorf("%s: %v, want %v", name, err, want)
			}
		}
		if after := e.dump(); !reflect.DeepEqual(before, after) {
			t.Fatal("a refused append changed the flow space")
		}
		wantVerifyClean(t, e, 1)
	})
}

func errOf[T any](_ T, err error) error { return err }

func TestStepCalls(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := importedFlow(e, StatusRunning, nil, false)
		steps := importedSteps(f)
		must(t, try(e.store.InsertFlow(e.ctx, Import{Flow: f, Steps: steps})))

		got := must(t, try(e.store.GetStep(e.ctx, f.ID, steps[1].ID)))
		if got.RunID != "run-a" || got.ChildSessionKey != "agent:c:session:2" {
			t.Fatalf("GetStep: %+v", got)
		}
		got = must(t, try(e.store.FindStepByRunID(e.ctx, f.ID, "run-b")))
		if got.ID != steps[0].ID || string(got.Result) != `{"ok":true}` {
			t.Fatalf("FindStepByRunID: %+v", got)
		}
		for name, err := range map[string]error{
			"get unknown step":  errOf(e.store.GetStep(e.ctx, f.ID, uuid.New())),
			"get unknown flow":  errOf(e.store.GetStep(e.ctx, uuid.New(), steps[0].ID)),
			"find unknown run":  errOf(e.store.FindStepByRunID(e.ctx, f.ID, "nope")),
			"find unknown flow": errOf(e.store.FindStepByRunID(e.ctx, uuid.New(), "run-a")),
		} {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: %v, want ErrNotFound", name, err)
			}
		}

		upd := *got
		upd.Status, upd.Task, upd.Result, upd.ChildSessionKey = StepFailed, "fetch again", nil, "agent:d:session:3"
		upd.UpdatedAt = time.Time{}
		u := must(t, try(e.store.UpdateStep(e.ctx, &upd)))
		if u.Status != StepFailed || u.Task != "fetch again" || u.Result != nil || u.ChildSessionKey != "agent:d:session:3" ||
			!u.CreatedAt.Equal(got.CreatedAt) || !u.UpdatedAt.Equal(e.clock.Now()) {
			t.Fatalf("UpdateStep: %+v", u)
		}
		if again := must(t, try(e.store.FindStepByRunID(e.ctx, f.ID, "run-b"))); !reflect.DeepEqual(again, u) {
			t.Fatalf("stored %+v, returned %+v", again, u)
		}
		before := e.dump()
		other := upd
		other.ID = uuid.New()
		missing := upd
		missing.RunID = "nope"
		badStatus := upd
		badStatus.Status = "done"
		badResult := upd
		badResult.Result = json.RawMessage(`{`)
		for name, c := range map[string]struct {
			st   *FlowStep
			want error
		}{
			"other id":     {&other, ErrInvalidData},
			"unknown run":  {&missing, ErrNotFound},
			"bad status":   {&badStatus, ErrInvalidData},
			"bad result":   {&badResult, ErrInvalidData},
			"nil":          {nil, ErrInvalidData},
			"unknown flow": {&FlowStep{FlowID: uuid.New(), RunID: "run-b", Runtime: RuntimeManaged, Status: StepPending}, ErrNotFound},
		} {
			if _, err := e.store.UpdateStep(e.ctx, c.st); !errors.Is(err, c.want) {
				t.Errorf("%s: %v, want %v", name, err, c.want)
			}
		}
		if after := e.dump(); !reflect.DeepEqual(before, after) {
			t.Fatal("a refused update changed the flow space")
		}
		wantVerifyClean(t, e, 1)
	})
}

// TestImportCallsMixVerifyClean interleaves the new store calls with the
// Manager's mutations and checks the invariants after each step.
func TestImportCallsMixVerifyClean(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		n := 0
		check := func(what string) {
			t.Helper()
			rep := must(t, try(e.store.verify(ctx)))
			if !rep.OK() || rep.Flows != n {
				t.Fatalf("after %s: %d flows (want %d), problems %+v", what, rep.Flows, n, rep.Problems)
			}
		}
		later := e.clock.Now().Add(time.Hour).Format(time.RFC3339Nano)
		timer := importedFlow(e, StatusWaiting, json.RawMessage(`{"kind":"timer","at":"`+later+`"}`), false)
		must(t, try(e.store.InsertFlow(ctx, Import{Flow: timer, Steps: importedSteps(timer)})))
		n++
		check("insert timer")
		must(t, try(e.store.AppendEventAt(ctx, timer.ID, "legacy", nil, timer.CreatedAt)))
		check("append event")
		must(t, try(e.m.RecordStepObservation(ctx, StepObservation{FlowID: timer.ID, RunID: "run-c", Status: StepRunning})))
		check("record step")
		must(t, try(e.m.RequestCancel(ctx, timer.ID)))
		check("request cancel")
		st := must(t, try(e.store.FindStepByRunID(ctx, timer.ID, "run-a")))
		st.Status = StepSucceeded
		must(t, try(e.store.UpdateStep(ctx, st)))
		check("update step")
		must(t, try(e.store.GetStep(ctx, timer.ID, st.ID)))
		e.clock.Advance(2 * time.Hour)
		NewWaitEngine(e.m).Tick(ctx)
		if f := must(t, try(e.m.Get(ctx, timer.ID))); f.Status != StatusCancelled {
			t.Fatalf("cancel-requested timer: %s", f.Status)
		}
		check("tick")

		ext := importedFlow(e, StatusWaiting, json.RawMessage(`{"kind":"external_event","topic":"t","correlation_id":"c"}`), false)
		must(t, try(e.store.InsertFlow(ctx, Import{Flow: ext})))
		n++
		check("insert external")
		must(t, try(e.m.UpdateState(ctx, ext.ID, map[string]int{"z": 1}, "")))
		check("update state")
		must(t, try(e.m.TryResumeExternal(ctx, ext.ID, "t", "c", nil)))
		check("resume")
		must(t, try(e.store.AppendEventAt(ctx, ext.ID, "legacy", nil, ext.UpdatedAt)))
		check("append after resume")
		must(t, try(e.m.SetWaiting(ctx, ext.ID, WaitManual())))
		must(t, try(e.m.Resume(ctx, ext.ID, nil)))
		must(t, try(e.m.Finish(ctx, ext.ID, nil)))
		check("finish")

		run := importedFlow(e, StatusRunning, nil, true)
		must(t, try(e.store.InsertFlow(ctx, Import{Flow: run, Events: importedEvents(run, 3)})))
		n++
		check("insert cancel-requested running")
		must(t, try(e.m.Cancel(ctx, run.ID)))
		check("cancel")
		created := importedFlow(e, StatusCreated, nil, false)
		must(t, try(e.store.InsertFlow(ctx, Import{Flow: created})))
		n++
		must(t, try(e.m.StartRunning(ctx, created.ID)))
		must(t, try(e.store.AppendEventAt(ctx, created.ID, "legacy", nil, created.UpdatedAt)))
		check("start")
		e.clock.Advance(time.Second)
		if pruned := must(t, try(e.m.PruneTerminalFlows(ctx, 0))); pruned != 3 {
			t.Fatalf("pruned %d, want 3", pruned)
		}
		n -= 3
		check("prune")
	})
}

// TestImportCallsKeepTheLimits: InsertFlow, AppendEventAt and UpdateStep
// (the import's store calls) keep the Manager's limits and UTF-8 rules:
// each refusal is ErrInvalidData naming the field, and writes nothing.
func TestImportCallsKeepTheLimits(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		good := importedFlow(e, StatusRunning, nil, false)
		steps := importedSteps(good)
		must(t, try(e.store.InsertFlow(ctx, Import{Flow: good, Steps: steps})))
		text := strings.Repeat("x", defaultTextBytes+1)
		label := strings.Repeat("x", defaultLabelBytes+1)
		step := func(mod func(*FlowStep)) Import {
			st := &FlowStep{RunID: "r", Runtime: RuntimeManaged, Status: StepPending}
			mod(st)
			return Import{Steps: []*FlowStep{st}}
		}
		before := e.dump()
		inserts := map[string]func(f *Flow) Import{
			"goal":              func(f *Flow) Import { f.Goal = text; return Import{} },
			"controller_id":     func(f *Flow) Import { f.ControllerID = label; return Import{} },
			"owner_session_key": func(f *Flow) Import { f.OwnerSessionKey = label; return Import{} },
			"requester_origin":  func(f *Flow) Import { f.RequesterOrigin = label; return Import{} },
			"current_step":      func(f *Flow) Import { f.CurrentStep = label; return Import{} },
			"goal utf-8":        func(f *Flow) Import { f.Goal = "bad \xff"; return Import{} },
			"controller_id utf-8": func(f *Flow) Import {
				f.ControllerID = "c\xfe"
				return Import{}
			},
			"revision": func(f *Flow) Import { f.Revision = maxRevision + 1; return Import{} },
			"event kind": func(f *Flow) Import {
				return Import{Events: []*FlowEvent{{Kind: EventKind(label)}}}
			},
			"event kind utf-8": func(f *Flow) Import {
				return Import{Events: []*FlowEvent{{Kind: "k\xff"}}}
			},
			"task":                    func(*Flow) Import { return step(func(s *FlowStep) { s.Task = text }) },
			"task utf-8":              func(*Flow) Import { return step(func(s *FlowStep) { s.Task = "\xff" }) },
			"run_id":                  func(*Flow) Import { return step(func(s *FlowStep) { s.RunID = label }) },
			"child_session_key":       func(*Flow) Import { return step(func(s *FlowStep) { s.ChildSessionKey = label }) },
			"child_session_key utf-8": func(*Flow) Import { return step(func(s *FlowStep) { s.ChildSessionKey = "\xc3" }) },
			"step id": func(f *Flow) Import {
				id := uuid.New()
				return Import{Steps: []*FlowStep{{ID: id, RunID: "a", Runtime: RuntimeManaged, Status: StepPending},
					&FlowStep{ID: id, RunID: "b", Runtime: RuntimeManaged, Status: StepPending}}}
			},
		}
		for name, spoil := range inserts {
			f := importedFlow(e, StatusCreated, nil, false)
			imp := spoil(f)
			imp.Flow = f
			_, err := e.store.InsertFlow(ctx, imp)
			field, _, _ := strings.Cut(name, " utf-8")
			if !errors.Is(err, ErrInvalidData) || !strings.Contains(err.Error(), strings.TrimSuffix(field, " ")) {
				t.Errorf("insert with a bad %s: %v, want ErrInvalidData naming it", name, err)
			}
		}
		appends := map[string]string{"event kind": label, "event kind utf-8": "k\xff"}
		for name, kind := range appends {
			if _, err := e.store.AppendEventAt(ctx, good.ID, EventKind(kind), nil, good.UpdatedAt); !errors.Is(err, ErrInvalidData) || !strings.Contains(err.Error(), "event kind") {
				t.Errorf("append with a bad %s: %v", name, err)
			}
		}
		updates := map[string]func(*FlowStep){
			"task":                    func(s *FlowStep) { s.Task = text },
			"task utf-8":              func(s *FlowStep) { s.Task = "t\xff" },
			"child_session_key":       func(s *FlowStep) { s.ChildSessionKey = label },
			"child_session_key utf-8": func(s *FlowStep) { s.ChildSessionKey = "\xff" },
		}
		for name, spoil := range updates {
			st := *steps[0]
			spoil(&st)
			field, _, _ := strings.Cut(name, " utf-8")
			if _, err := e.store.UpdateStep(ctx, &st); !errors.Is(err, ErrInvalidData) || !strings.Contains(err.Error(), field) {
				t.Errorf("update with a bad %s: %v", name, err)
			}
		}
		if after := e.dump(); !reflect.DeepEqual(before, after) {
			t.Fatal("a refused call changed the flow space")
		}
	})
}

// TestInsertFlowKeepsTheStoreBounds: an imported flow holds no more than
// a flow the Manager writes: its audit log is cut to the byte bound
// (Limits.EventBytes; the newest entry always kept) and its steps to
// Limits.StepsPerFlow.
func TestInsertFlowKeepsTheStoreBounds(t *testing.T) {
	const budget = 4096
	forEachBackend(t, func(t *testing.T, e *env) {
		f := importedFlow(e, StatusFinished, nil, false)
		events := importedEvents(f, 200)
		for _, ev := range events {
			ev.Payload = json.RawMessage(`{"pad":"` + strings.Repeat("p", 100) + `"}`)
		}
		must(t, try(e.store.InsertFlow(e.ctx, Import{Flow: f, Events: events})))
		entries, size, eb := auditLog(t, e, f.ID)
		if size > budget || eb != size || len(entries) < 20 {
			t.Fatalf("log of %d entries, %d bytes (eb %d), want at most %d bytes", len(entries), size, eb, budget)
		}
		evs := must(t, try(e.m.ListEvents(e.ctx, f.ID, 1000)))
		if len(evs) != len(entries) || evs[0].ID != "200" {
			t.Fatalf("ListEvents: %d, newest %s", len(evs), evs[0].ID)
		}
		// An event over the whole budget is kept alone.
		g := importedFlow(e, StatusFinished, nil, false)
		big := &FlowEvent{Kind: "big", Payload: json.RawMessage(`{"pad":"` + strings.Repeat("b", 2*budget) + `"}`)}
		must(t, try(e.store.InsertFlow(e.ctx, Import{Flow: g, Events: append(importedEvents(g, 3), big)})))
		if entries, _, _ := auditLog(t, e, g.ID); len(entries) != 1 {
			t.Fatalf("%d entries, want the newest alone", len(entries))
		}
		// Steps beyond StepsPerFlow are refused.
		h := importedFlow(e, StatusRunning, nil, false)
		steps := []*FlowStep{
			{RunID: "a", Runtime: RuntimeManaged, Status: StepPending},
			{RunID: "b", Runtime: RuntimeManaged, Status: StepPending},
			{RunID: "c", Runtime: RuntimeManaged, Status: StepPending},
		}
		if _, err := e.store.InsertFlow(e.ctx, Import{Flow: h, Steps: steps}); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("3 steps over a limit of 2: %v", err)
		}
		wantVerifyClean(t, e, 2)
	}, WithLimits(Limits{EventBytes: budget, StepsPerFlow: 2}))
}
