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
)

func seedInput() CreateManagedInput {
	return CreateManagedInput{
		ControllerID:    "kate/bible-upload",
		Goal:            "upload chapter 1",
		OwnerSessionKey: "agent:kate:session:abc",
		RequesterOrigin: "user-1",
		CurrentStep:     "verse-0",
		State:           map[string]any{"verses_done": 0, "total": 31},
	}
}

// outcome carries a call's two results into must.
type outcome[T any] struct {
	v   T
	err error
}

func try[T any](v T, err error) outcome[T] { return outcome[T]{v, err} }

// must fails the test on an error and returns the value.
func must[T any](t testing.TB, o outcome[T]) T {
	t.Helper()
	if o.err != nil {
		t.Fatalf("unexpected error: %v", o.err)
	}
	return o.v
}

func stateOf(t testing.TB, f *Flow) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(f.State, &m); err != nil {
		t.Fatalf("state %s: %v", f.State, err)
	}
	return m
}

func wantErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}

// --- the state machine, in Go only ---

func TestStatusParseAndTerminal(t *testing.T) {
	for _, st := range Statuses() {
		got, err := ParseFlowStatus(string(st))
		if err != nil || got != st {
			t.Fatalf("ParseFlowStatus(%q) = %v, %v", st, got, err)
		}
	}
	if _, err := ParseFlowStatus("paused"); !errors.Is(err, ErrInvalidData) {
		t.Fatalf("unknown status: %v", err)
	}
	terminal := map[FlowStatus]bool{StatusFinished: true, StatusFailed: true, StatusCancelled: true}
	for _, st := range Statuses() {
		if st.IsTerminal() != terminal[st] {
			t.Fatalf("%s.IsTerminal() = %v", st, st.IsTerminal())
		}
	}
}

func TestTransitionGraph(t *testing.T) {
	edges := map[[2]FlowStatus]bool{
		{StatusCreated, StatusRunning}: true, {StatusCreated, StatusCancelled}: true,
		{StatusRunning, StatusWaiting}: true, {StatusRunning, StatusFinished}: true,
		{StatusRunning, StatusFailed}: true, {StatusRunning, StatusCancelled}: true,
		{StatusWaiting, StatusRunning}: true, {StatusWaiting, StatusFailed}: true,
		{StatusWaiting, StatusCancelled}: true,
	}
	for _, from := range Statuses() {
		for _, to := range Statuses() {
			if got := from.CanTransitionTo(to); got != edges[[2]FlowStatus{from, to}] {
				t.Errorf("%s -> %s = %v", from, to, got)
			}
		}
	}
}

func TestFlowTransitionToOrderOfChecks(t *testing.T) {
	f := &Flow{Status: StatusFinished, CancelRequested: true}
	wantErr(t, f.TransitionTo(StatusRunning), ErrAlreadyTerminal)
	f = &Flow{Status: StatusCreated, CancelRequested: true}
	wantErr(t, f.TransitionTo(StatusWaiting), ErrCancelPending)
	f = &Flow{Status: StatusCreated}
	wantErr(t, f.TransitionTo(StatusWaiting), ErrIllegalTransition)
	wantErr(t, f.TransitionTo(StatusFailed), ErrIllegalTransition)
	if err := f.TransitionTo(StatusRunning); err != nil || f.Status != StatusRunning {
		t.Fatalf("created -> running: %v %s", err, f.Status)
	}
	f.RequestCancel()
	if !f.CancelRequested {
		t.Fatal("RequestCancel did not set the flag")
	}
	if err := f.TransitionTo(StatusCancelled); err != nil {
		t.Fatal(err)
	}
	done := &Flow{Status: StatusFinished}
	done.RequestCancel()
	if done.CancelRequested {
		t.Fatal("RequestCancel on a terminal flow set the flag")
	}
}

func TestLuaPreludeMatchesTable(t *testing.T) {
	p := luaPrelude(false)
	for _, to := range Statuses() {
		for _, from := range sourcesOf(to) {
			if !strings.Contains(p, fmt.Sprintf("[%q]=true", from)) {
				t.Fatalf("prelude lacks %s -> %s", from, to)
			}
		}
	}
}

// --- the manager on every backend ---

func TestHappyPath(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateManaged(ctx, seedInput())))
		if f.Status != StatusCreated || f.Revision != 0 || f.Wait != nil {
			t.Fatalf("created: %+v", f)
		}
		if f.ID.Version() != 4 {
			t.Fatalf("id %s is not a v4 UUID", f.ID)
		}
		f = must(t, try(e.m.StartRunning(ctx, f.ID)))
		if f.Status != StatusRunning || f.Revision != 1 {
			t.Fatalf("started: %+v", f)
		}
		e.clock.Advance(time.Second)
		f = must(t, try(e.m.UpdateState(ctx, f.ID, map[string]any{"verses_done": 10}, "verse-10")))
		if f.Revision != 2 || f.CurrentStep != "verse-10" {
			t.Fatalf("updated: %+v", f)
		}
		if got := string(f.State); got != `{"total":31,"verses_done":10}` {
			t.Fatalf("state = %s", got)
		}
		if !f.UpdatedAt.After(f.CreatedAt) {
			t.Fatalf("updated_at %v not after created_at %v", f.UpdatedAt, f.CreatedAt)
		}
		f = must(t, try(e.m.SetWaiting(ctx, f.ID, WaitManual())))
		if f.Status != StatusWaiting || string(f.Wait) != `{"kind":"manual"}` || f.Revision != 3 {
			t.Fatalf("waiting: %+v wait=%s", f, f.Wait)
		}
		f = must(t, try(e.m.Resume(ctx, f.ID, map[string]any{"approved": true})))
		if f.Status != StatusRunning || f.Wait != nil || f.Revision != 4 || stateOf(t, f)["approved"] != true {
			t.Fatalf("resumed: %+v", f)
		}
		f = must(t, try(e.m.Finish(ctx, f.ID, map[string]any{"verses_done": 31})))
		if f.Status != StatusFinished || f.Revision != 5 || stateOf(t, f)["verses_done"] != float64(31) {
			t.Fatalf("finished: %+v", f)
		}
		got := must(t, try(e.m.Get(ctx, f.ID)))
		if !reflect.DeepEqual(got, f) {
			t.Fatalf("Get = %+v\nwant %+v", got, f)
		}
		evs := must(t, try(e.m.ListEvents(ctx, f.ID, 100)))
		var kinds []string
		for _, ev := range evs {
			kinds = append(kinds, ev.Kind)
			if ev.FlowID != f.ID {
				t.Fatalf("event flow id %s", ev.FlowID)
			}
		}
		want := []string{"finished", "resumed", "waiting", "state_updated", "started", "created"}
		if !reflect.DeepEqual(kinds, want) {
			t.Fatalf("events = %v, want %v", kinds, want)
		}
		if evs[0].Revision != 5 || evs[5].Revision != 0 || evs[0].ID != "6" {
			t.Fatalf("event revisions/ids: %+v %+v", evs[0], evs[5])
		}
		if string(evs[2].Payload) != `{"wait":{"kind":"manual"}}` {
			t.Fatalf("waiting payload %s", evs[2].Payload)
		}
		if string(evs[3].Payload) != `{"patch":{"verses_done":10},"next_step":"verse-10"}` {
			t.Fatalf("state_updated payload %s", evs[3].Payload)
		}
		if string(evs[5].Payload) != `{"controller_id":"kate/bible-upload","current_step":"verse-0","goal":"upload chapter 1"}` {
			t.Fatalf("created payload %s", evs[5].Payload)
		}
	})
}

func TestGetMissing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		if err := e.store.LoadScripts(e.ctx); err != nil {
			t.Fatal(err)
		}
		before := e.dump()
		_, err := e.m.Get(e.ctx, uuid.New())
		wantErr(t, err, ErrNotFound)
		_, err = e.m.StartRunning(e.ctx, uuid.New())
		wantErr(t, err, ErrNotFound)
		_, err = e.m.UpdateState(e.ctx, uuid.New(), map[string]int{"a": 1}, "")
		wantErr(t, err, ErrNotFound)
		_, err = e.m.RequestCancel(e.ctx, uuid.New())
		wantErr(t, err, ErrNotFound)
		if after := e.dump(); !reflect.DeepEqual(before, after) {
			t.Fatalf("a refused call wrote keys: %v", after)
		}
	})
}

func TestIllegalMovesPersistNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateManaged(ctx, seedInput())))
		before := e.dump()
		_, err := e.m.SetWaiting(ctx, f.ID, WaitManual())
		wantErr(t, err, ErrIllegalTransition)
		var te *TransitionError
		if !errors.As(err, &te) || te.From != StatusCreated || te.To != StatusWaiting {
			t.Fatalf("transition error %#v", err)
		}
		_, err = e.m.Fail(ctx, f.ID, "nope")
		wantErr(t, err, ErrIllegalTransition)
		_, err = e.m.Finish(ctx, f.ID, nil)
		wantErr(t, err, ErrIllegalTransition)
		_, err = e.m.Resume(ctx, f.ID, map[string]int{"x": 1})
		wantErr(t, err, ErrIllegalTransition)
		if after := e.dump(); !reflect.DeepEqual(before, after) {
			t.Fatalf("refused moves changed Redis:\nbefore %v\nafter  %v", before, after)
		}
		got := must(t, try(e.m.Get(ctx, f.ID)))
		if got.Revision != 0 {
			t.Fatalf("revision %d", got.Revision)
		}
	})
}

func TestStickyCancel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateManaged(ctx, seedInput())))
		f = must(t, try(e.m.StartRunning(ctx, f.ID)))
		f = must(t, try(e.m.RequestCancel(ctx, f.ID)))
		if !f.CancelRequested || f.Revision != 2 || f.Status != StatusRunning {
			t.Fatalf("after request: %+v", f)
		}
		again := must(t, try(e.m.RequestCancel(ctx, f.ID)))
		if again.Revision != 2 {
			t.Fatalf("second request bumped the revision: %d", again.Revision)
		}
		before := e.dump()
		_, err := e.m.UpdateState(ctx, f.ID, map[string]int{"a": 1}, "")
		wantErr(t, err, ErrCancelPending)
		_, err = e.m.SetWaiting(ctx, f.ID, WaitManual())
		wantErr(t, err, ErrCancelPending)
		_, err = e.m.Finish(ctx, f.ID, nil)
		wantErr(t, err, ErrCancelPending)
		_, err = e.m.Fail(ctx, f.ID, "x")
		wantErr(t, err, ErrCancelPending)
		if after := e.dump(); !reflect.DeepEqual(before, after) {
			t.Fatalf("refused moves changed Redis")
		}
		f = must(t, try(e.m.Cancel(ctx, f.ID)))
		if f.Status != StatusCancelled || f.Revision != 3 {
			t.Fatalf("cancelled: %+v", f)
		}
		_, err = e.m.Cancel(ctx, f.ID)
		wantErr(t, err, ErrAlreadyTerminal)
		// Request cancel on a terminal flow: no change, no event.
		n := len(must(t, try(e.m.ListEvents(ctx, f.ID, 100))))
		f2 := must(t, try(e.m.RequestCancel(ctx, f.ID)))
		if f2.Revision != 3 || len(must(t, try(e.m.ListEvents(ctx, f.ID, 100)))) != n {
			t.Fatalf("request cancel on terminal changed something")
		}
		kinds := []string{}
		for _, ev := range must(t, try(e.m.ListEvents(ctx, f.ID, 100))) {
			kinds = append(kinds, ev.Kind)
		}
		if strings.Join(kinds, ",") != "cancelled,cancel_requested,started,created" {
			t.Fatalf("events %v", kinds)
		}
	})
}

func TestCancelFromWaitingClearsWait(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateManaged(ctx, seedInput())))
		must(t, try(e.m.StartRunning(ctx, f.ID)))
		must(t, try(e.m.SetWaiting(ctx, f.ID, WaitTimer(e.clock.Now().Add(time.Hour)))))
		f = must(t, try(e.m.Cancel(ctx, f.ID)))
		if f.Status != StatusCancelled || f.Wait != nil {
			t.Fatalf("cancelled: %+v", f)
		}
		shard := e.store.keys.shardOf(f.ID)
		if n := e.client.ZCard(ctx, e.store.keys.timers(shard)).Val(); n != 0 {
			t.Fatalf("timer left behind: %d", n)
		}
	})
}

func TestDoubleFinishAndFailReason(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateManaged(ctx, seedInput())))
		must(t, try(e.m.StartRunning(ctx, f.ID)))
		must(t, try(e.m.Finish(ctx, f.ID, nil)))
		_, err := e.m.Finish(ctx, f.ID, nil)
		wantErr(t, err, ErrAlreadyTerminal)
		_, err = e.m.UpdateState(ctx, f.ID, map[string]int{"a": 1}, "")
		wantErr(t, err, ErrAlreadyTerminal)

		g := must(t, try(e.m.CreateManaged(ctx, seedInput())))
		must(t, try(e.m.StartRunning(ctx, g.ID)))
		must(t, try(e.m.SetWaiting(ctx, g.ID, WaitExternalEvent("mail", "m-1"))))
		g = must(t, try(e.m.Fail(ctx, g.ID, "upstream said no")))
		if g.Status != StatusFailed || g.Wait != nil {
			t.Fatalf("failed: %+v", g)
		}
		failure, _ := stateOf(t, g)["failure"].(map[string]any)
		if failure["reason"] != "upstream said no" {
			t.Fatalf("failure = %v", failure)
		}
		if _, err := time.Parse(time.RFC3339, failure["at"].(string)); err != nil {
			t.Fatalf("failure.at: %v", err)
		}
		if stateOf(t, g)["total"] != float64(31) {
			t.Fatalf("fail dropped the state: %s", g.State)
		}
		ev := must(t, try(e.m.ListEvents(ctx, g.ID, 1)))[0]
		if ev.Kind != "failed" || string(ev.Payload) != `{"reason":"upstream said no"}` {
			t.Fatalf("failed event %+v", ev)
		}
		_, err = e.m.Fail(ctx, g.ID, "")
		wantErr(t, err, ErrInvalidData)
	})
}

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

func TestStateSizeLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})))
		big := strings.Repeat("x", 600)
		f = must(t, try(e.m.UpdateState(ctx, f.ID, map[string]string{"a": big}, "")))
		before := e.dump()
		// One patch over the limit.
		_, err := e.m.UpdateState(ctx, f.ID, map[string]string{"b": strings.Repeat("y", 1100)}, "")
		wantErr(t, err, ErrInvalidData)
		// A patch under the limit that makes the whole state too large.
		_, err = e.m.UpdateState(ctx, f.ID, map[string]string{"b": big}, "")
		wantErr(t, err, ErrInvalidData)
		if after := e.dump(); !reflect.DeepEqual(before, after) {
			t.Fatalf("a refused oversize patch changed Redis")
		}
		// Overwriting the big key with another of the same size fits.
		must(t, try(e.m.UpdateState(ctx, f.ID, map[string]string{"a": strings.Repeat("z", 600)}, "")))
	}, WithMaxStateBytes(1024))
}

func TestMirroredStepsUpsertAndDuplicate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		if f.Status != StatusRunning || f.Revision != 1 {
			t.Fatalf("mirrored: %+v", f)
		}
		for i := 0; i < 3; i++ {
			must(t, try(e.m.RecordStepObservation(ctx, StepObservation{
				FlowID: f.ID, RunID: fmt.Sprintf("cron-%d", i), Task: fmt.Sprintf("task-%d", i),
				Status: StepSucceeded, Result: map[string]int{"idx": i},
				ChildSessionKey: "agent:kate:session:child",
			})))
		}
		steps := must(t, try(e.m.ListSteps(ctx, f.ID)))
		if len(steps) != 3 {
			t.Fatalf("steps: %d", len(steps))
		}
		first := steps[0]
		if first.CreatedAt.IsZero() || first.UpdatedAt.IsZero() || first.ID == uuid.Nil {
			t.Fatalf("step fields not read back: %+v", first)
		}
		for i, s := range steps {
			if s.RunID != fmt.Sprintf("cron-%d", i) || string(s.Result) != fmt.Sprintf(`{"idx":%d}`, i) || s.Runtime != RuntimeMirrored {
				t.Fatalf("step %d: %+v", i, s)
			}
		}
		// Upsert in place: same id, child kept, task/status/result replaced.
		up := must(t, try(e.m.RecordStepObservation(ctx, StepObservation{
			FlowID: f.ID, RunID: "cron-0", Task: "task-0b", Status: StepFailed, Result: "boom",
		})))
		if up.ID != first.ID || up.ChildSessionKey != "agent:kate:session:child" || up.Task != "task-0b" ||
			up.Status != StepFailed || string(up.Result) != `"boom"` || !up.CreatedAt.Equal(first.CreatedAt) {
			t.Fatalf("upsert: %+v (first %+v)", up, first)
		}
		if n := len(must(t, try(e.m.ListSteps(ctx, f.ID)))); n != 3 {
			t.Fatalf("upsert added a step: %d", n)
		}
		ev := must(t, try(e.m.ListEvents(ctx, f.ID, 1)))[0]
		if ev.Kind != "step_observed" || string(ev.Payload) != `{"run_id":"cron-0","runtime":"mirrored","status":"failed"}` {
			t.Fatalf("event %+v %s", ev, ev.Payload)
		}
		// Duplicate run id through the store.
		err := e.store.InsertStep(ctx, &FlowStep{FlowID: f.ID, RunID: "cron-1", Runtime: RuntimeManaged, Status: StepPending})
		wantErr(t, err, ErrDuplicateStep)
		must(t, try(0, e.store.InsertStep(ctx, &FlowStep{FlowID: f.ID, RunID: "manual-1", Runtime: RuntimeManaged, Status: StepPending, Task: "t"})))
		if n := len(must(t, try(e.m.ListSteps(ctx, f.ID)))); n != 4 {
			t.Fatalf("insert: %d steps", n)
		}
		// Unknown flow.
		_, err = e.m.RecordStepObservation(ctx, StepObservation{FlowID: uuid.New(), RunID: "x", Status: StepRunning})
		wantErr(t, err, ErrNotFound)
		err = e.store.InsertStep(ctx, &FlowStep{FlowID: uuid.New(), RunID: "x", Runtime: RuntimeManaged, Status: StepPending})
		wantErr(t, err, ErrNotFound)
		_, err = e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "x", Status: "weird"})
		wantErr(t, err, ErrInvalidData)
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

func TestCompareAndSetOption(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateManaged(ctx, seedInput())))
		_, err := e.m.StartRunning(ctx, f.ID, IfRevision(5))
		wantErr(t, err, ErrRevisionMismatch)
		f = must(t, try(e.m.StartRunning(ctx, f.ID, IfRevision(0))))
		_, err = e.m.UpdateState(ctx, f.ID, map[string]int{"a": 1}, "", IfRevision(0))
		wantErr(t, err, ErrRevisionMismatch)
		must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"a": 1}, "", IfRevision(1))))
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

func TestListEventsLimits(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		for i := 0; i < 5; i++ {
			must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"i": i}, "")))
		}
		if evs := must(t, try(e.m.ListEvents(ctx, f.ID, -1))); len(evs) != 0 {
			t.Fatalf("negative limit returned %d", len(evs))
		}
		evs := must(t, try(e.m.ListEvents(ctx, f.ID, 3)))
		if len(evs) != 3 || evs[0].ID != "7" || evs[2].ID != "5" {
			t.Fatalf("limit 3: %+v", evs)
		}
		if evs := must(t, try(e.m.ListEvents(ctx, uuid.New(), 10))); len(evs) != 0 {
			t.Fatalf("unknown flow has events")
		}
	})
}

func TestEventCap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		for i := 0; i < 10; i++ {
			f = must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"i": i}, "")))
		}
		evs := must(t, try(e.m.ListEvents(ctx, f.ID, 100)))
		if len(evs) != 4 || evs[0].ID != "12" || evs[0].Revision != f.Revision {
			t.Fatalf("capped log: %d events, newest %+v", len(evs), evs[0])
		}
	}, WithEventCap(4))
}

func TestListPaging(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		owner := "agent:x:session:{odd} key"
		var ids []uuid.UUID
		for i := 0; i < 23; i++ {
			in := seedInput()
			in.OwnerSessionKey = owner
			f := must(t, try(e.m.CreateManaged(ctx, in)))
			ids = append(ids, f.ID)
			if i%3 != 0 {
				e.clock.Advance(time.Millisecond) // some ties on purpose
			}
		}
		other := seedInput()
		must(t, try(e.m.CreateManaged(ctx, other)))
		var seen []uuid.UUID
		cursor := ""
		for pages := 0; ; pages++ {
			p := must(t, try(e.m.ListByOwnerPage(ctx, owner, WithLimit(5), WithCursor(cursor))))
			for _, f := range p.Flows {
				seen = append(seen, f.ID)
			}
			if p.Next == "" {
				break
			}
			cursor = p.Next
			if pages > 10 {
				t.Fatal("too many pages")
			}
		}
		if len(seen) != 23 {
			t.Fatalf("saw %d flows", len(seen))
		}
		// Newest created first: ids were created in order.
		for i := 1; i < len(seen); i++ {
			a := must(t, try(e.m.Get(ctx, seen[i-1])))
			b := must(t, try(e.m.Get(ctx, seen[i])))
			if a.CreatedAt.Before(b.CreatedAt) {
				t.Fatalf("owner list not newest first at %d", i)
			}
		}
		uniq := map[uuid.UUID]bool{}
		for _, id := range seen {
			uniq[id] = true
		}
		if len(uniq) != 23 {
			t.Fatalf("owner pages repeated flows: %d distinct", len(uniq))
		}
		// Status list: flows leave "created" between pages; none is seen
		// twice and none that stayed is skipped.
		p := must(t, try(e.m.ListByStatusPage(ctx, StatusCreated, WithLimit(7))))
		got := map[uuid.UUID]int{}
		for _, f := range p.Flows {
			got[f.ID]++
		}
		for _, id := range ids[10:15] {
			e.clock.Advance(time.Millisecond)
			must(t, try(e.m.StartRunning(ctx, id)))
		}
		for p.Next != "" {
			p = must(t, try(e.m.ListByStatusPage(ctx, StatusCreated, WithLimit(7), WithCursor(p.Next))))
			for _, f := range p.Flows {
				got[f.ID]++
				if f.Status != StatusCreated {
					t.Fatalf("status list returned a %s flow", f.Status)
				}
			}
		}
		for id, n := range got {
			if n > 1 {
				t.Fatalf("flow %s seen %d times", id, n)
			}
		}
		stayed := 0
		for _, id := range ids {
			if f := must(t, try(e.m.Get(ctx, id))); f.Status == StatusCreated && got[id] == 0 {
				t.Fatalf("flow %s stayed created but was skipped", id)
			} else if f.Status == StatusCreated {
				stayed++
			}
		}
		if stayed != 18 {
			t.Fatalf("stayed %d", stayed)
		}
		_, err := e.m.ListByStatus(ctx, "bogus")
		wantErr(t, err, ErrInvalidData)
		_, err = e.m.ListByOwner(ctx, owner, WithCursor("garbage"))
		wantErr(t, err, ErrInvalidData)
		rec := must(t, try(e.m.ListRecent(ctx, nil, WithLimit(3))))
		if len(rec.Flows) != 3 || rec.Flows[0].ID != ids[14] {
			t.Fatalf("recent: first %v", rec.Flows[0].ID)
		}
	})
}

func TestPrefixValidation(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	for _, p := range []string{"", "a{b", "a}b", "has space", "tab\t", strings.Repeat("x", 200)} {
		if _, err := NewRedisStore(c, WithPrefix(p)); !errors.Is(err, ErrInvalidData) {
			t.Errorf("prefix %q: %v", p, err)
		}
	}
	if _, err := NewRedisStore(c, WithShards(0)); !errors.Is(err, ErrInvalidData) {
		t.Errorf("shards 0: %v", err)
	}
	if _, err := NewRedisStore(nil); !errors.Is(err, ErrInvalidData) {
		t.Errorf("nil client: %v", err)
	}
	if _, err := NewRedisStore(c, WithPrefix("app:taskflow")); err != nil {
		t.Errorf("good prefix: %v", err)
	}
}

// --- concurrency and restart: the original's end-to-end tests ---

func TestFlowStateSurvivesReopen(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateManaged(ctx, seedInput())))
		f = must(t, try(e.m.StartRunning(ctx, f.ID)))
		f = must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"verses_done": 10}, "verse-10")))
		f = must(t, try(e.m.SetWaiting(ctx, f.ID, json.RawMessage(`{"kind":"manual"}`))))
		steps := must(t, try(e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "r", Status: StepRunning})))
		events := must(t, try(e.m.ListEvents(ctx, f.ID, 100)))

		// A new client and a new manager: another process.
		m2 := NewManager(e.reopenStore(e.b.client(t)))
		re := must(t, try(m2.Get(ctx, f.ID)))
		if !reflect.DeepEqual(re, f) {
			t.Fatalf("reopened %+v\nwant %+v", re, f)
		}
		if re.Status != StatusWaiting || re.CurrentStep != "verse-10" || re.Revision != 3 {
			t.Fatalf("reopened: %+v", re)
		}
		st := stateOf(t, re)
		if st["verses_done"] != float64(10) || st["total"] != float64(31) {
			t.Fatalf("state %v", st)
		}
		if !reflect.DeepEqual(must(t, try(m2.ListEvents(ctx, f.ID, 100))), events) {
			t.Fatal("events differ after reopen")
		}
		if s2 := must(t, try(m2.ListSteps(ctx, f.ID))); len(s2) != 1 || !reflect.DeepEqual(s2[0], steps) {
			t.Fatalf("steps differ after reopen: %+v vs %+v", s2, steps)
		}
		resumed := must(t, try(m2.Resume(ctx, re.ID, nil)))
		if resumed.Status != StatusRunning || resumed.Wait != nil {
			t.Fatalf("resumed %+v", resumed)
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

// TestOneRoundTripPerMutation counts the commands a client sends.
func TestOneRoundTripPerMutation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		counter := &commandCounter{}
		c := e.b.client(t)
		c.AddHook(counter)
		m := NewManager(e.reopenStore(c))
		// The first create of a flow space records its layout (one more
		// round trip, once): let another store make it.
		must(t, try(e.m.CreateManaged(ctx, seedInput())))
		// Warm the script cache (and the connection) so EVALSHA hits.
		if err := m.Store().LoadScripts(ctx); err != nil {
			t.Fatal(err)
		}
		counts := map[string]int{}
		measure := func(name string, fn func() error) {
			t.Helper()
			counter.reset()
			if err := fn(); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			counts[name] = counter.count()
			if counts[name] != 1 {
				t.Logf("%s sent %v", name, counter.names)
			}
		}
		var f *Flow
		measure("CreateManaged", func() (err error) { f, err = m.CreateManaged(ctx, seedInput()); return })
		measure("StartRunning", func() error { _, err := m.StartRunning(ctx, f.ID); return err })
		measure("UpdateState", func() error { _, err := m.UpdateState(ctx, f.ID, map[string]int{"a": 1}, "s"); return err })
		measure("RecordStepObservation", func() error {
			_, err := m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "r", Status: StepRunning})
			return err
		})
		measure("SetWaiting", func() error { _, err := m.SetWaiting(ctx, f.ID, WaitManual()); return err })
		measure("Resume", func() error { _, err := m.Resume(ctx, f.ID, map[string]int{"b": 2}); return err })
		measure("RequestCancel", func() error { _, err := m.RequestCancel(ctx, f.ID); return err })
		measure("Cancel", func() error { _, err := m.Cancel(ctx, f.ID); return err })
		var g *Flow
		measure("CreateMirrored", func() (err error) { g, err = m.CreateMirrored(ctx, seedInput()); return })
		measure("Finish", func() error { _, err := m.Finish(ctx, g.ID, nil); return err })
		h := must(t, try(m.CreateMirrored(ctx, seedInput())))
		measure("Fail", func() error { _, err := m.Fail(ctx, h.ID, "r"); return err })
		measure("Get", func() error { _, err := m.Get(ctx, h.ID); return err })
		for name, n := range counts {
			if n != 1 {
				t.Errorf("%s sent %d commands, want 1", name, n)
			}
		}
		t.Logf("commands per call: %v", counts)
	})
}

type commandCounter struct {
	mu    sync.Mutex
	n     int
	names []string
}

func (c *commandCounter) reset() { c.mu.Lock(); c.n = 0; c.names = nil; c.mu.Unlock() }
func (c *commandCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name != "hello" && name != "client" {
			c.mu.Lock()
			c.n++
			c.names = append(c.names, name)
			c.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}
func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.mu.Lock()
		c.n += len(cmds)
		c.mu.Unlock()
		return next(ctx, cmds)
	}
}

func TestScriptFlushIsInvisible(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		if err := e.client.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"a": 1}, "")))
		if err := e.client.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		// Pipelined reads fall back too.
		if got := must(t, try(e.m.ListByOwner(ctx, seedInput().OwnerSessionKey))); len(got) != 1 {
			t.Fatalf("list after flush: %d", len(got))
		}
	})
}

func TestContextDeadlineHonoured(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx, cancel := context.WithCancel(e.ctx)
		cancel()
		_, err := e.m.CreateManaged(ctx, seedInput())
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled context: %v", err)
		}
	})
}

func TestShardCountMismatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := must(t, try(e.m.CreateMirrored(e.ctx, seedInput())))
		wrong, err := NewRedisStore(e.b.client(t), WithPrefix(e.prefix), WithShards(8))
		if err != nil {
			t.Fatal(err)
		}
		m := NewManager(wrong)
		_, err = m.Get(e.ctx, f.ID)
		wantErr(t, err, ErrLayoutMismatch)
		if !strings.Contains(err.Error(), "16 shards") {
			t.Fatalf("unclear: %v", err)
		}
		_, err = m.CreateManaged(e.ctx, seedInput())
		wantErr(t, err, ErrLayoutMismatch)
		_, err = m.ListByOwner(e.ctx, "o")
		wantErr(t, err, ErrLayoutMismatch)
		if rep := NewWaitEngine(m, WithLogger(quietLogger())).Tick(e.ctx); !errors.Is(rep.Err, ErrLayoutMismatch) {
			t.Fatalf("tick: %v", rep.Err)
		}
		// The right count still works.
		must(t, try(NewManager(e.reopenStore(e.b.client(t))).Get(e.ctx, f.ID)))
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

// TestListPagingTies: flows that share one millisecond page correctly in
// both directions, and a late page costs what an early one does.
func TestListPagingTies(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		const n = 300
		owner := "agent:ties:session:1"
		for i := 0; i < n; i++ { // the fake clock stands still: all ties
			in := seedInput()
			in.OwnerSessionKey = owner
			must(t, try(e.m.CreateManaged(e.ctx, in)))
		}
		walk := func(list func(cursor string) *FlowPage, desc bool) int {
			seen := map[uuid.UUID]bool{}
			last := ""
			cursor := ""
			for {
				p := list(cursor)
				for _, f := range p.Flows {
					id := f.ID.String()
					if seen[f.ID] {
						t.Fatalf("flow %s seen twice", id)
					}
					seen[f.ID] = true
					if last != "" && (id < last) != desc {
						t.Fatalf("order broken: %s after %s (desc %v)", id, last, desc)
					}
					last = id
				}
				if p.Next == "" {
					return len(seen)
				}
				cursor = p.Next
			}
		}
		got := walk(func(c string) *FlowPage {
			return must(t, try(e.m.ListByStatusPage(e.ctx, StatusCreated, WithLimit(7), WithCursor(c))))
		}, false)
		if got != n {
			t.Fatalf("status walk saw %d of %d", got, n)
		}
		got = walk(func(c string) *FlowPage {
			return must(t, try(e.m.ListByOwnerPage(e.ctx, owner, WithLimit(11), WithCursor(c))))
		}, true)
		if got != n {
			t.Fatalf("owner walk saw %d of %d", got, n)
		}
		// A page deep into the ties is still one pipeline for the index
		// and one for the flows.
		counter := &commandCounter{}
		c := e.b.client(t)
		c.AddHook(counter)
		m := NewManager(e.reopenStore(c))
		p := must(t, try(m.ListByStatusPage(e.ctx, StatusCreated, WithLimit(10))))
		for i := 0; i < 20; i++ {
			p = must(t, try(m.ListByStatusPage(e.ctx, StatusCreated, WithLimit(10), WithCursor(p.Next))))
		}
		counter.reset()
		must(t, try(m.ListByStatusPage(e.ctx, StatusCreated, WithLimit(10), WithCursor(p.Next))))
		if got := counter.count(); got != e.store.Shards()+10 {
			t.Fatalf("a late page sent %d commands, want %d (one per shard, one per flow)", got, e.store.Shards()+10)
		}
	})
}
