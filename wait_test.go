package taskflow

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestWaitConditionRoundTrip(t *testing.T) {
	at := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		w    WaitCondition
		json string
	}{
		{WaitTimer(at), `{"kind":"timer","at":"2030-05-01T12:00:00Z"}`},
		{WaitExternalEvent("mail", "m-1"), `{"kind":"external_event","topic":"mail","correlation_id":"m-1"}`},
		{WaitManual(), `{"kind":"manual"}`},
	}
	for _, c := range cases {
		b, err := json.Marshal(c.w)
		if err != nil || string(b) != c.json {
			t.Fatalf("marshal %v = %s, %v", c.w, b, err)
		}
		back, err := ParseWaitCondition(b)
		if err != nil || !reflect.DeepEqual(back, c.w) {
			t.Fatalf("parse %s = %+v, %v", b, back, err)
		}
	}
	for _, bad := range []string{
		``, `null`, `[]`, `"timer"`, `{}`, `{"kind":"sleep"}`, `{"kind":"timer"}`,
		`{"kind":"timer","at":"tomorrow"}`, `{"kind":"timer","at":5}`,
		`{"kind":"external_event","topic":"t"}`, `{"kind":"external_event","topic":"","correlation_id":"c"}`,
		`{"kind":"external_event","topic":" ","correlation_id":"c"}`, `{"kind":`,
	} {
		if _, err := ParseWaitCondition(json.RawMessage(bad)); !errors.Is(err, ErrInvalidData) {
			t.Errorf("ParseWaitCondition(%s) = %v", bad, err)
		}
	}
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
