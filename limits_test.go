package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// TestLimitsRefuseOversizedInput: every stored string and the key count
// of one patch are bounded; a refusal writes nothing (issue 11 items 9
// and 11, first part).
func TestLimitsRefuseOversizedInput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		in := CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"}
		f := must(t, try(e.m.CreateMirrored(ctx, in)))
		big := strings.Repeat("x", defaultTextBytes+1)
		label := strings.Repeat("x", defaultLabelBytes+1)
		manyKeys := map[string]int{}
		for i := 0; i <= defaultPatchKeys; i++ {
			manyKeys["k"+itoa(i)] = i
		}
		before := e.dump()
		for name, call := range map[string]func() error{
			"goal": func() error {
				_, err := e.m.CreateManaged(ctx, CreateManagedInput{ControllerID: "c", Goal: big, OwnerSessionKey: "o"})
				return err
			},
			"controller": func() error {
				_, err := e.m.CreateManaged(ctx, CreateManagedInput{ControllerID: label, Goal: "g", OwnerSessionKey: "o"})
				return err
			},
			"owner": func() error {
				_, err := e.m.CreateManaged(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: label})
				return err
			},
			"step": func() error { _, err := e.m.UpdateState(ctx, f.ID, nil, label); return err },
			"run id": func() error {
				_, err := e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: label, Status: StepRunning})
				return err
			},
			"task": func() error {
				_, err := e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "r", Task: big, Status: StepRunning})
				return err
			},
			"reason":     func() error { _, err := e.m.Fail(ctx, f.ID, big); return err },
			"patch keys": func() error { _, err := e.m.UpdateState(ctx, f.ID, manyKeys, ""); return err },
		} {
			if err := call(); !errors.Is(err, ErrInvalidData) {
				t.Fatalf("%s over its limit: %v", name, err)
			}
		}
		after := e.dump()
		if len(after) != len(before) {
			t.Fatal("a refused call changed Redis")
		}
		for k, v := range before {
			if after[k] != v {
				t.Fatalf("a refused call changed %s", k)
			}
		}
	})
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[n:])
		}
	}
}

// TestAuditLogIsBoundedInBytes: a flow's audit log keeps at most
// Limits.EventBytes bytes of entries, dropping the oldest, but always
// its newest entry; the flow's 'eb' field is the log's size.
func TestAuditLogIsBoundedInBytes(t *testing.T) {
	const budget = 2000
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})))
		pad := strings.Repeat("p", 150)
		for i := 0; i < 40; i++ {
			f = must(t, try(e.m.UpdateState(ctx, f.ID, map[string]string{"pad": pad, "i": itoa(i)}, "")))
		}
		checkLog := func(wantNewest string) []string {
			t.Helper()
			entries, size, eb := auditLog(t, e, f.ID)
			if eb != size {
				t.Fatalf("eb %d, the log holds %d bytes", eb, size)
			}
			if size > budget && len(entries) > 1 {
				t.Fatalf("the log holds %d bytes in %d entries, over the budget of %d", size, len(entries), budget)
			}
			evs := must(t, try(e.m.ListEvents(ctx, f.ID, 1000)))
			if len(evs) != len(entries) || evs[0].ID != wantNewest {
				t.Fatalf("ListEvents: %d events, newest %s; want %d, newest %s", len(evs), evs[0].ID, len(entries), wantNewest)
			}
			return entries
		}
		entries := checkLog("42") // created, started, 40 updates
		if len(entries) < 5 || len(entries) > budget/150 {
			t.Fatalf("%d entries kept", len(entries))
		}
		// An entry over the whole budget is kept alone.
		f = must(t, try(e.m.UpdateState(ctx, f.ID, map[string]string{"big": strings.Repeat("b", 3*budget)}, "")))
		if entries = checkLog("43"); len(entries) != 1 {
			t.Fatalf("%d entries after one over the budget", len(entries))
		}
		// A flow written without 'eb' has it counted from its log once.
		if err := e.client.HDel(ctx, e.store.keys.flow(f.ID), "eb").Err(); err != nil {
			t.Fatal(err)
		}
		must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"n": 1}, "")))
		checkLog("44")
	}, WithLimits(Limits{EventBytes: budget}))
}

// TestStateCapCountsJSON: the state cap (Limits.StateBytes) bounds the
// state as the JSON it reads back as: a state of exactly the cap is
// taken, one byte more is refused, whatever the number of keys and
// however its keys are escaped.
func TestStateCapCountsJSON(t *testing.T) {
	state := map[string]any{`quote"d`: 1, "tab\tbed": "x", "line\u2028sep": true, "ctl\u0001": nil}
	for i := 0; i < 200; i++ {
		state["k"+itoa(i)] = i
	}
	raw, err := json.Marshal(state)
	if err != nil {
		t.Fatal(err)
	}
	limit := len(raw)
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		// Built by merges of one key each: the size is kept, not
		// recounted.
		f := must(t, try(e.m.CreateMirrored(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})))
		for k, v := range state {
			f = must(t, try(e.m.UpdateState(ctx, f.ID, map[string]any{k: v}, "")))
		}
		got := must(t, try(e.m.Get(ctx, f.ID)))
		if len(got.State) != limit {
			t.Fatalf("state reads back as %d bytes, want %d", len(got.State), limit)
		}
		if _, err := e.m.UpdateState(ctx, f.ID, map[string]any{"k0": 10}, ""); !errors.Is(err, ErrStateTooLarge) {
			t.Fatalf("one byte over the cap: %v", err)
		}
		// Overwriting a key with a value of the same size fits.
		must(t, try(e.m.UpdateState(ctx, f.ID, map[string]any{"k0": 9}, "")))
		// A whole state of exactly the cap fits as a create.
		g := must(t, try(e.m.CreateMirrored(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o", State: state})))
		if got := must(t, try(e.m.Get(ctx, g.ID))); len(got.State) != limit {
			t.Fatalf("created state reads back as %d bytes, want %d", len(got.State), limit)
		}
	}, WithLimits(Limits{StateBytes: limit}))
}

// TestLimitsAreStoreOptions: WithLimits sets each bound; zero fields
// keep their defaults; bad bounds are refused.
func TestLimitsAreStoreOptions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		if _, err := e.m.CreateManaged(ctx, CreateManagedInput{ControllerID: "controller", Goal: "g", OwnerSessionKey: "o"}); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("an 10-byte controller over a limit of 8: %v", err)
		}
		if _, err := e.m.CreateManaged(ctx, CreateManagedInput{ControllerID: "c", Goal: "a goal of 20 bytes..", OwnerSessionKey: "o"}); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("a 20-byte goal over a limit of 16: %v", err)
		}
		f := must(t, try(e.m.CreateMirrored(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})))
		if _, err := e.m.UpdateState(ctx, f.ID, map[string]int{"a": 1, "b": 2, "c": 3}, ""); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("3 keys over a limit of 2: %v", err)
		}
		for i := 0; i < 2; i++ {
			must(t, try(e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "r" + itoa(i), Status: StepRunning})))
		}
		if _, err := e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "r2", Status: StepRunning}); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("a third step over a limit of 2: %v", err)
		}
		if got := e.store.limits; got.TextBytes != 16 || got.EventBytes != defaultEventBytes {
			t.Fatalf("limits %+v", got)
		}
	}, WithLimits(Limits{LabelBytes: 8, TextBytes: 16, PatchKeys: 2, StepsPerFlow: 2}))
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	for _, bad := range []Limits{{LabelBytes: -1}, {StepsPerFlow: maxStepsPerFlowLimit + 1}, {PatchKeys: -5}} {
		if _, err := NewRedisStore(c, WithLimits(bad)); !errors.Is(err, ErrInvalidData) {
			t.Errorf("limits %+v: %v", bad, err)
		}
	}
	s, err := NewRedisStore(c, WithLimits(Limits{EventBytes: -1}))
	if err != nil || s.limits.EventBytes != 0 {
		t.Fatalf("no byte bound: %v %+v", err, s.limits)
	}
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
	}, WithLimits(Limits{StateBytes: 1024}))
}

// TestAuditLogRecountIsBounded: a log without its size ('eb') and with no
// count bound (WithLimits(Limits{EventsPerFlow: -1})), as a flow written before the byte bound
// may hold, is cut to its newest 1,000 entries when first counted: one
// call never reads an unbounded list.
func TestAuditLogRecountIsBounded(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})))
		key := e.store.keys.events(f.ID)
		old := make([]any, 5000)
		for i := range old {
			old[i] = `{"kind":"state_updated","rev":1,"at":0,"payload":{}}`
		}
		if err := e.client.RPush(ctx, key, old...).Err(); err != nil {
			t.Fatal(err)
		}
		if err := e.client.HDel(ctx, e.store.keys.flow(f.ID), "eb").Err(); err != nil {
			t.Fatal(err)
		}
		must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"n": 1}, "")))
		n, err := e.client.LLen(ctx, key).Result()
		if err != nil || n > 1001 {
			t.Fatalf("log of %d entries after the recount, %v", n, err)
		}
		entries, size, eb := auditLog(t, e, f.ID)
		if eb != size {
			t.Fatalf("eb %d, log %d bytes in %d entries", eb, size, len(entries))
		}
	}, WithLimits(Limits{EventsPerFlow: -1})) // the default byte bound (1 MiB) would keep all 5,000
}

// auditLog reads flow id's audit log as stored: its entries, their size
// in bytes, and the size the flow records ('eb', 0 when absent).
func auditLog(t *testing.T, e *env, id uuid.UUID) (entries []string, size, eb int) {
	t.Helper()
	entries, err := e.client.LRange(e.ctx, e.store.keys.events(id), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range entries {
		size += len(x)
	}
	eb, _ = e.client.HGet(e.ctx, e.store.keys.flow(id), "eb").Int()
	return entries, size, eb
}

// TestRevisionLimit: a revision (or event id) Lua cannot format exactly is
// never written: InsertFlow refuses one over maxRevision, and a change
// that could pass it is refused, writing nothing; up to there revisions
// read back exact.
func TestRevisionLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := importedFlow(e, StatusRunning, nil, false)
		f.Revision = maxRevision
		must(t, try(e.store.InsertFlow(ctx, Import{Flow: f})))
		w := importedFlow(e, StatusWaiting, json.RawMessage(`{"kind":"external_event","topic":"rl","correlation_id":"1"}`), false)
		w.Revision = maxRevision
		must(t, try(e.store.InsertFlow(ctx, Import{Flow: w})))
		before := e.dump()
		for name, call := range map[string]func() error{
			"update": func() error { _, err := e.m.UpdateState(ctx, f.ID, map[string]int{"n": 1}, ""); return err },
			"wait":   func() error { _, err := e.m.SetWaiting(ctx, f.ID, WaitManual()); return err },
			"finish": func() error { _, err := e.m.Finish(ctx, f.ID, nil); return err },
			"cancel": func() error { _, err := e.m.RequestCancel(ctx, f.ID); return err },
			"step": func() error {
				_, err := e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "r", Status: StepRunning})
				return err
			},
			"append": func() error { _, err := e.store.AppendEventAt(ctx, f.ID, "note", nil, f.UpdatedAt); return err },
			"resume": func() error { _, err := e.m.TryResumeExternal(ctx, w.ID, "rl", "1", "x"); return err },
			"manual resume": func() error {
				_, err := e.m.Resume(ctx, w.ID, nil)
				return err
			},
		} {
			if err := call(); !errors.Is(err, ErrRevisionLimit) || !errors.Is(err, ErrInvalidData) {
				t.Errorf("%s at maxRevision: %v, want ErrRevisionLimit", name, err)
			}
		}
		if after := e.dump(); !reflect.DeepEqual(before, after) {
			t.Fatal("a refused change wrote something")
		}
		if got := must(t, try(e.m.Get(ctx, f.ID))); got.Revision != maxRevision {
			t.Fatalf("revision %d, want %d", got.Revision, int64(maxRevision))
		}
		// Two below the limit: a change lands, exact.
		g := importedFlow(e, StatusRunning, nil, false)
		g.Revision = maxRevision - 2
		must(t, try(e.store.InsertFlow(ctx, Import{Flow: g})))
		got := must(t, try(e.m.UpdateState(ctx, g.ID, map[string]int{"n": 1}, "")))
		if got.Revision != maxRevision-1 {
			t.Fatalf("revision %d, want %d", got.Revision, int64(maxRevision-1))
		}
		evs := must(t, try(e.m.ListEvents(ctx, g.ID, 10)))
		if evs[0].Revision != maxRevision-1 {
			t.Fatalf("event revision %d", evs[0].Revision)
		}
		if _, err := e.m.UpdateState(ctx, g.ID, map[string]int{"n": 2}, ""); !errors.Is(err, ErrRevisionLimit) {
			t.Fatalf("a change at maxRevision-1: %v", err)
		}
		h := importedFlow(e, StatusRunning, nil, false)
		h.Revision = maxRevision + 1
		if _, err := e.store.InsertFlow(ctx, Import{Flow: h}); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("insert over maxRevision: %v", err)
		}
		requireVerifyClean(t, e.m)
	})
}

// TestEventLabelsAreBounded: topics, correlation ids and worker ids are
// bounded like labels (Limits.LabelBytes) at every entry point: a wait
// condition (SetWaiting, UpdateAndAppend, InsertFlow), TryResumeExternal,
// ResumeByCorrelation, PublishResume, Claim and a bridge message. A
// refusal is ErrInvalidData naming the field and writes nothing; a bridge
// message over the bound is dropped as malformed, nothing kept.
func TestEventLabelsAreBounded(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		label := strings.Repeat("x", defaultLabelBytes+1)
		f := e.runningFlow(t)
		w := e.waitingFlow(t, WaitManual())
		imp := importedFlow(e, StatusWaiting, json.RawMessage(`{"kind":"external_event","topic":"t","correlation_id":"`+label+`"}`), false)
		before := e.dump()
		for name, call := range map[string]func() error{
			"topic wait": func() error { _, err := e.m.SetWaiting(ctx, f.ID, WaitExternalEvent(label, "c")); return err },
			"correlation_id wait": func() error {
				_, err := e.m.SetWaiting(ctx, f.ID, WaitExternalEvent("t", label))
				return err
			},
			"correlation_id write": func() error {
				g := *f
				g.Status, g.Wait = StatusWaiting, json.RawMessage(`{"kind":"external_event","topic":"t","correlation_id":"`+label+`"}`)
				_, _, err := e.store.UpdateAndAppend(ctx, &g, "waiting", nil)
				return err
			},
			"correlation_id insert": func() error { _, err := e.store.InsertFlow(ctx, Import{Flow: imp}); return err },
			"topic resume": func() error {
				_, err := e.m.TryResumeExternal(ctx, w.ID, label, "c", nil)
				return err
			},
			"correlation_id resume": func() error {
				_, err := e.m.TryResumeExternal(ctx, w.ID, "t", label, nil)
				return err
			},
			"topic by correlation": func() error { _, err := e.m.ResumeByCorrelation(ctx, label, "c", nil); return err },
			"correlation_id by correlation": func() error {
				_, err := e.m.ResumeByCorrelation(ctx, "t", label, nil)
				return err
			},
			"topic publish": func() error {
				return e.m.PublishResume(ctx, ResumeRequest{Topic: label, CorrelationID: "c"})
			},
			"correlation_id publish": func() error {
				return e.m.PublishResume(ctx, ResumeRequest{Topic: "t", CorrelationID: label})
			},
			"worker_id claim": func() error {
				_, _, err := e.m.Claim(ctx, f.ControllerID, label, time.Minute, WithClaimWait(0))
				return err
			},
			"worker_id utf-8 claim": func() error {
				_, _, err := e.m.Claim(ctx, f.ControllerID, "w\xff", time.Minute, WithClaimWait(0))
				return err
			},
			"controller_id claim": func() error {
				_, _, err := e.m.Claim(ctx, label, "w", time.Minute, WithClaimWait(0))
				return err
			},
		} {
			field, _, _ := strings.Cut(name, " ")
			if err := call(); !errors.Is(err, ErrInvalidData) || !strings.Contains(err.Error(), field) {
				t.Errorf("%s over its bound: %v", name, err)
			}
		}
		if after := e.dump(); !reflect.DeepEqual(before, after) {
			t.Fatal("a refused call changed Redis")
		}
		// At the bound: taken.
		at := strings.Repeat("y", defaultLabelBytes)
		must(t, try(e.m.SetWaiting(ctx, f.ID, WaitExternalEvent(at, at))))
		// A bridge message over the bound (written by another producer)
		// is dropped as malformed: nothing is kept for it.
		body, _ := json.Marshal(bridgeMessage{Topic: "t", CorrelationID: label})
		e.client.XAdd(ctx, &redis.XAddArgs{Stream: e.store.keys.bridge(), Values: []any{"body", string(body)}})
		must(t, try(0, e.m.PublishResume(ctx, ResumeRequest{Topic: at, CorrelationID: at})))
		eng := e.engine(WithBridgeBlock(20 * time.Millisecond))
		bctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- eng.RunResumeBridge(bctx) }()
		for eng.BridgeStats().Handled < 2 {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done
		if st := eng.BridgeStats(); st.Malformed != 1 || st.Resumed != 1 {
			t.Fatalf("bridge stats %+v, want one malformed, one resumed", st)
		}
		if n := e.countEarly(t); n != 0 {
			t.Fatalf("%d kept events, want 0", n)
		}
		requireVerifyClean(t, e.m)
	})
}
