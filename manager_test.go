package taskflow

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

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
		var kinds []EventKind
		for _, ev := range evs {
			kinds = append(kinds, ev.Kind)
			if ev.FlowID != f.ID {
				t.Fatalf("event flow id %s", ev.FlowID)
			}
		}
		want := []EventKind{"finished", "resumed", "waiting", "state_updated", "started", "created"}
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
			kinds = append(kinds, string(ev.Kind))
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

// TestFailAtStateCap: a flow whose state sits at its size cap can still
// be failed (issue 11 item 8), while an update is refused.
func TestFailAtStateCap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})))
		must(t, try(e.m.UpdateState(ctx, f.ID, map[string]string{"big": strings.Repeat("x", 1000)}, "")))
		if _, err := e.m.UpdateState(ctx, f.ID, map[string]string{"more": "y"}, ""); err == nil {
			t.Fatal("the state is not at its cap")
		}
		got, err := e.m.Fail(ctx, f.ID, "out of room")
		if err != nil {
			t.Fatalf("Fail at the state cap: %v", err)
		}
		if got.Status != StatusFailed || !strings.Contains(string(got.State), "out of room") {
			t.Fatalf("failed flow: %s %s", got.Status, got.State)
		}
	}, WithLimits(Limits{StateBytes: 1010}))
}

// TestCountByOwner: the count covers every status and every shard, and
// only the owner's flows.
func TestCountByOwner(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		for i := 0; i < 5; i++ {
			f := must(t, try(e.m.CreateMirrored(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "counted"})))
			if i == 0 {
				must(t, try(e.m.Finish(ctx, f.ID, nil)))
			}
		}
		must(t, try(e.m.CreateManaged(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "counted"})))
		must(t, try(e.m.CreateMirrored(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "other"})))
		if n := must(t, try(e.m.CountByOwner(ctx, "counted"))); n != 6 {
			t.Fatalf("CountByOwner: %d, want 6", n)
		}
		if n := must(t, try(e.m.CountByOwner(ctx, "nobody"))); n != 0 {
			t.Fatalf("CountByOwner of an unknown owner: %d", n)
		}
		_, err := e.m.CountByOwner(ctx, "")
		wantErr(t, err, ErrInvalidData)
	})
}
