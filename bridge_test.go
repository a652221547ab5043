package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

func TestBridgeResumes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		byID := e.waitingFlow(t, WaitExternalEvent("webhook", "abc"))
		byCorr := e.waitingFlow(t, WaitExternalEvent("webhook", "def"))
		// Published before any engine runs: still handled.
		must(t, try(0, e.m.PublishResume(e.ctx, ResumeRequest{FlowID: byID.ID, Topic: "webhook", CorrelationID: "abc", Payload: map[string]int{"n": 1}})))
		must(t, try(0, e.m.PublishResume(e.ctx, ResumeRequest{Topic: "webhook", CorrelationID: "def"})))
		// Malformed messages are acknowledged and counted, never retried.
		e.client.XAdd(e.ctx, &redis.XAddArgs{Stream: e.store.keys.bridge(), Values: []any{"body", "not json"}})
		e.client.XAdd(e.ctx, &redis.XAddArgs{Stream: e.store.keys.bridge(), Values: []any{"other", "x"}})
		e.client.XAdd(e.ctx, &redis.XAddArgs{Stream: e.store.keys.bridge(), Values: []any{"body", `{"flow_id":"nope","topic":"a","correlation_id":"b"}`}})
		// A duplicate is harmless.
		must(t, try(0, e.m.PublishResume(e.ctx, ResumeRequest{FlowID: byID.ID, Topic: "webhook", CorrelationID: "abc"})))

		eng := e.engine(WithBridgeBlock(20 * time.Millisecond))
		ctx, cancel := context.WithCancel(e.ctx)
		done := make(chan error, 1)
		go func() { done <- eng.RunResumeBridge(ctx) }()
		deadline := time.Now().Add(5 * time.Second)
		for eng.BridgeStats().Handled < 6 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("bridge returned %v", err)
		}
		st := eng.BridgeStats()
		if st.Handled != 6 || st.Resumed != 2 || st.Malformed != 3 {
			t.Fatalf("stats %+v", st)
		}
		for _, f := range []*Flow{byID, byCorr} {
			if g := must(t, try(e.m.Get(e.ctx, f.ID))); g.Status != StatusRunning {
				t.Fatalf("flow %s not resumed", f.ID)
			}
		}
		if got := stateOf(t, must(t, try(e.m.Get(e.ctx, byID.ID))))["resume_event"]; !reflect.DeepEqual(got, map[string]any{"n": float64(1)}) {
			t.Fatalf("resume_event %v", got)
		}
		if n := e.client.XLen(e.ctx, e.store.keys.bridge()).Val(); n != 0 {
			t.Fatalf("stream keeps %d handled messages", n)
		}
		if cs, err := e.client.XInfoConsumers(e.ctx, e.store.keys.bridge(), bridgeGroup).Result(); err != nil || len(cs) != 0 {
			t.Fatalf("the stopped engine left its consumer: %v %v", cs, err)
		}
		err := e.m.PublishResume(e.ctx, ResumeRequest{Topic: "", CorrelationID: "x"})
		wantErr(t, err, ErrInvalidData)
	})
}

// TestBridgeClaimsFromDeadConsumer: a consumer reads a message and dies
// before acknowledging it; a live engine claims it after the timeout.
func TestBridgeClaimsFromDeadConsumer(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := e.waitingFlow(t, WaitExternalEvent("webhook", "abc"))
		stream := e.store.keys.bridge()
		must(t, try(0, e.m.PublishResume(e.ctx, ResumeRequest{FlowID: f.ID, Topic: "webhook", CorrelationID: "abc"})))
		// The dead consumer: joins the group, reads, never acknowledges.
		dead := e.b.client(t)
		if err := dead.XGroupCreateMkStream(e.ctx, stream, bridgeGroup, "0").Err(); err != nil {
			t.Fatal(err)
		}
		res := must(t, try(dead.XReadGroup(e.ctx, &redis.XReadGroupArgs{
			Group: bridgeGroup, Consumer: "dead", Streams: []string{stream, ">"}, Count: 10, Block: -1,
		}).Result()))
		if len(res) != 1 || len(res[0].Messages) != 1 {
			t.Fatalf("dead consumer read %v", res)
		}
		_ = dead.Close()

		claimAfter := 150 * time.Millisecond
		if e.b.mini != nil {
			// miniredis's idle times follow its own clock.
			e.b.mini.FastForward(time.Second)
		} else {
			time.Sleep(claimAfter)
		}
		eng := e.engine(WithClaimAfter(claimAfter), WithBridgeBlock(20*time.Millisecond))
		ctx, cancel := context.WithCancel(e.ctx)
		done := make(chan error, 1)
		go func() { done <- eng.RunResumeBridge(ctx) }()
		deadline := time.Now().Add(5 * time.Second)
		for eng.BridgeStats().Handled < 1 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done
		if st := eng.BridgeStats(); st.Claimed != 1 || st.Resumed != 1 {
			t.Fatalf("stats %+v", st)
		}
		if g := must(t, try(e.m.Get(e.ctx, f.ID))); g.Status != StatusRunning {
			t.Fatal("claimed message did not resume the flow")
		}
		pending := must(t, try(e.client.XPending(e.ctx, stream, bridgeGroup).Result()))
		if pending.Count != 0 {
			t.Fatalf("%d messages still pending", pending.Count)
		}
	})
}

// TestBridgeTakesBackItsOwnPending: messages this consumer read and did
// not finish (a restart under its old name; a handling or an ack cut by
// a failover) are handled again as soon as it reads, not when another
// consumer's claim timeout passes. The claim timeout here is an hour, so
// only a read of its own pending list can resume the flow. Found by
// TestSentinelFailover: a request cut by the kill waited 30 s.
func TestBridgeTakesBackItsOwnPending(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := e.waitingFlow(t, WaitExternalEvent("webhook", "own"))
		stream := e.store.keys.bridge()
		must(t, try(0, e.m.PublishResume(e.ctx, ResumeRequest{FlowID: f.ID, Topic: "webhook", CorrelationID: "own"})))
		// The consumer's earlier life: it read the message, then stopped.
		before := e.b.client(t)
		if err := before.XGroupCreateMkStream(e.ctx, stream, bridgeGroup, "0").Err(); err != nil {
			t.Fatal(err)
		}
		res := must(t, try(before.XReadGroup(e.ctx, &redis.XReadGroupArgs{
			Group: bridgeGroup, Consumer: "engine-a", Streams: []string{stream, ">"}, Count: 10, Block: -1,
		}).Result()))
		if len(res) != 1 || len(res[0].Messages) != 1 {
			t.Fatalf("read %v", res)
		}
		_ = before.Close()

		eng := e.engine(WithConsumerName("engine-a"), WithClaimAfter(time.Hour), WithBridgeBlock(20*time.Millisecond))
		ctx, cancel := context.WithCancel(e.ctx)
		done := make(chan error, 1)
		go func() { done <- eng.RunResumeBridge(ctx) }()
		deadline := time.Now().Add(10 * time.Second)
		for eng.BridgeStats().Handled < 1 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done
		if st := eng.BridgeStats(); st.Handled != 1 || st.Resumed != 1 || st.Claimed != 0 {
			t.Fatalf("stats %+v: its own pending message was not handled", st)
		}
		if g := must(t, try(e.m.Get(e.ctx, f.ID))); g.Status != StatusRunning {
			t.Fatalf("flow is %s, want running", g.Status)
		}
		pending := must(t, try(e.client.XPending(e.ctx, stream, bridgeGroup).Result()))
		if pending.Count != 0 {
			t.Fatalf("%d messages still pending", pending.Count)
		}
	})
}

// drainBridge handles every message of the bridge's stream once, as an
// engine's bridge reads them.
func drainBridge(t testing.TB, e *env, eng *WaitEngine) {
	t.Helper()
	stream := e.store.keys.bridge()
	if err := eng.ensureGroup(e.ctx, stream); err != nil {
		t.Fatal(err)
	}
	for e.client.XLen(e.ctx, stream).Val() > 0 {
		if err := eng.readOnce(e.ctx, stream); err != nil {
			t.Fatal(err)
		}
	}
}

// TestResumeRequestIDAppliesOnce: a resume request published twice under
// one id (a publisher's retry, a NATS bridge that died before its ack),
// at once or after it was used, goes on the stream once and resumes one
// wait once, by flow id and by correlation; a new id resumes again. The
// same with early events off.
func TestResumeRequestIDAppliesOnce(t *testing.T) {
	t.Run("early events", func(t *testing.T) { forEachBackend(t, requestIDAppliesOnce) })
	t.Run("no early events", func(t *testing.T) { forEachBackend(t, requestIDAppliesOnce, WithEarlyEvents(0, 0)) })
}

func requestIDAppliesOnce(t *testing.T, e *env) {
	ctx := e.ctx
	stream := e.store.keys.bridge()
	eng := e.engine(WithBridgeBlock(time.Millisecond))
	for _, byFlow := range []bool{true, false} {
		f := e.waitingFlow(t, WaitExternalEvent("pay", "order-1"))
		req := ResumeRequest{ID: fmt.Sprintf("approval-%v", byFlow), Topic: "pay", CorrelationID: "order-1", Payload: "ok"}
		if byFlow {
			req.FlowID = f.ID
		}
		for i := 0; i < 2; i++ {
			must(t, try(0, e.m.PublishResume(ctx, req)))
		}
		if n := e.client.XLen(ctx, stream).Val(); n != 1 {
			t.Fatalf("one request id made %d stream entries", n)
		}
		drainBridge(t, e, eng)
		running := must(t, try(e.m.Get(ctx, f.ID)))
		if running.Status != StatusRunning {
			t.Fatalf("the request did not resume: %s", running.Status)
		}
		// The flow waits again on the same correlation id; the
		// request comes again, late: published again, and handed to
		// the stream again past the publisher's memory (a message
		// stored twice).
		w := must(t, try(e.m.SetWaiting(ctx, f.ID, WaitExternalEvent("pay", "order-1"))))
		must(t, try(0, e.m.PublishResume(ctx, req)))
		body := must(t, try(json.Marshal(bridgeMessage{ID: req.ID, FlowID: flowIDText(req.FlowID), Topic: req.Topic, CorrelationID: req.CorrelationID, Payload: json.RawMessage(`"ok"`)})))
		e.client.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"body", string(body)}})
		drainBridge(t, e, eng)
		if got := must(t, try(e.m.Get(ctx, f.ID))); got.Status != StatusWaiting || got.Revision != w.Revision {
			t.Fatalf("a repeated request resumed the flow again: %s rev %d (was %d)", got.Status, got.Revision, w.Revision)
		}
		if n := e.countEarly(t); n != 0 {
			t.Fatalf("a repeated request was kept: %d kept events", n)
		}
		// A new id resumes it.
		req.ID += "-2"
		must(t, try(0, e.m.PublishResume(ctx, req)))
		drainBridge(t, e, eng)
		if got := must(t, try(e.m.Get(ctx, f.ID))); got.Status != StatusRunning {
			t.Fatalf("a new request id did not resume: %s", got.Status)
		}
		must(t, try(e.m.Cancel(ctx, f.ID)))
	}
	before := e.dump()
	for _, bad := range []string{"a b", "a:b", "a=b", "~x", strings.Repeat("x", maxCallIDBytes+1)} {
		err := e.m.PublishResume(ctx, ResumeRequest{ID: bad, Topic: "pay", CorrelationID: "order-1"})
		wantErr(t, err, ErrInvalidData)
	}
	e.sameDump(t, before, "a refused request id")
	requireVerifyClean(t, e.m)
}

func flowIDText(id uuid.UUID) string {
	if id == uuid.Nil {
		return ""
	}
	return id.String()
}

// TestBridgeStatsCountRedeliveryOnce: a message handled twice (its ack
// was lost, or its engine died before acking) counts its resume once.
func TestBridgeStatsCountRedeliveryOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		stream := e.store.keys.bridge()
		if err := eng.ensureGroup(e.ctx, stream); err != nil {
			t.Fatal(err)
		}
		a := e.waitingFlow(t, WaitExternalEvent("t", "a"))
		e.waitingFlow(t, WaitExternalEvent("t", "b"))
		msgs := []redis.XMessage{
			{ID: "1700000000000-1", Values: map[string]any{"body": `{"id":"m1","flow_id":"` + a.ID.String() + `","topic":"t","correlation_id":"a"}`}},
			{ID: "1700000000000-2", Values: map[string]any{"body": `{"id":"m2","topic":"t","correlation_id":"b"}`}},
			{ID: "1700000000000-3", Values: map[string]any{"body": `{"topic":"t","correlation_id":"none"}`}},
		}
		for _, claimed := range []bool{false, true} {
			for _, msg := range msgs {
				if err := eng.handle(e.ctx, stream, msg, claimed); err != nil {
					t.Fatal(err)
				}
			}
		}
		if st := eng.BridgeStats(); st.Resumed != 2 || st.Handled != 6 {
			t.Fatalf("stats %+v, want 2 resumed of 6 handled", st)
		}
	})
}

// TestResumePathWaitsForReplicas: under WithReplicaAcks every write of
// the resume path (a published request, the early events' keep, take,
// delivery and settle, the bridge's handling) is on the replica once
// acknowledged, so a crash that promotes it loses none; with no replica
// each says ErrNotReplicated, applied, and publishing again under the
// same id adds nothing.
func TestResumePathWaitsForReplicas(t *testing.T) {
	master := startRedisServer(t)
	replica := startRedisServer(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.port))
	rc := replica.client(t)
	waitReplicaUp(t, rc)
	ctx := context.Background()
	store, err := NewRedisStore(master.client(t), WithPrefix("replresume"), WithReplicaAcks(1, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(store)
	in := CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"}
	waiting := func(m *Manager, corr string) *Flow {
		f := must(t, try(m.CreateMirrored(ctx, in)))
		return must(t, try(m.SetWaiting(ctx, f.ID, WaitExternalEvent("t", corr))))
	}
	// Handled by the bridge: by flow id and by correlation.
	a, b := waiting(m, "a"), waiting(m, "b")
	must(t, try(0, m.PublishResume(ctx, ResumeRequest{ID: "req-a", FlowID: a.ID, Topic: "t", CorrelationID: "a"})))
	must(t, try(0, m.PublishResume(ctx, ResumeRequest{ID: "req-b", Topic: "t", CorrelationID: "b"})))
	eng := NewWaitEngine(m, WithLogger(quietLogger()), WithBridgeBlock(time.Millisecond))
	stream := store.keys.bridge()
	if err := eng.ensureGroup(ctx, stream); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2 && eng.BridgeStats().Handled < 2; i++ {
		if err := eng.readOnce(ctx, stream); err != nil {
			t.Fatal(err)
		}
	}
	// Published, not yet handled; kept, then taken by a wait; kept.
	must(t, try(0, m.PublishResume(ctx, ResumeRequest{ID: "req-later", Topic: "t", CorrelationID: "later"})))
	must(t, try(m.ResumeByCorrelation(ctx, "t", "c", "early")))
	c := must(t, try(m.SetWaiting(ctx, must(t, try(m.CreateMirrored(ctx, in))).ID, WaitExternalEvent("t", "c"))))
	must(t, try(m.ResumeByCorrelation(ctx, "t", "kept", "k")))
	if c.Status != StatusRunning {
		t.Fatalf("the wait did not take the kept event: %s", c.Status)
	}
	master.kill() // a crash: no shutdown, no last sync
	if err := rc.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	promoted, err := NewRedisStore(rc, WithPrefix("replresume"))
	if err != nil {
		t.Fatal(err)
	}
	pm := NewManager(promoted)
	for _, f := range []*Flow{a, b, c} {
		if got := must(t, try(pm.Get(ctx, f.ID))); got.Status != StatusRunning {
			t.Fatalf("after promotion flow %s is %s", f.ID, got.Status)
		}
	}
	if n := rc.XLen(ctx, stream).Val(); n != 1 {
		t.Fatalf("after promotion the stream holds %d requests, want the unhandled one", n)
	}
	if n := must(t, try(promoted.countEarlyEvents(ctx))); n != 1 {
		t.Fatalf("after promotion %d kept events, want 1", n)
	}
	// The same request again: remembered on the replica, not added.
	if err := pm.PublishResume(ctx, ResumeRequest{ID: "req-later", Topic: "t", CorrelationID: "later"}); err != nil {
		t.Fatal(err)
	}
	if n := rc.XLen(ctx, stream).Val(); n != 1 {
		t.Fatalf("a request published again after promotion: %d entries", n)
	}
	// No replica now: every write of the path says so, and applied.
	lone, err := NewRedisStore(rc, WithPrefix("replresume"), WithReplicaAcks(1, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	lm := NewManager(lone)
	req := ResumeRequest{ID: "req-lone", Topic: "t", CorrelationID: "lone"}
	for i := 0; i < 2; i++ {
		if err := lm.PublishResume(ctx, req); !errors.Is(err, ErrNotReplicated) {
			t.Fatalf("publish without a replica: %v", err)
		}
	}
	if n := rc.XLen(ctx, stream).Val(); n != 2 {
		t.Fatalf("the unconfirmed request: %d entries, want 2", n)
	}
	d := waiting(pm, "d")
	fs, err := lm.ResumeByCorrelation(ctx, "t", "d", nil)
	if !errors.Is(err, ErrNotReplicated) || len(fs) != 1 || fs[0].ID != d.ID {
		t.Fatalf("resume by correlation without a replica: %d flows, %v", len(fs), err)
	}
	must(t, try(pm.ResumeByCorrelation(ctx, "t", "e", "kept")))
	e := must(t, try(pm.CreateMirrored(ctx, in)))
	got, err := lm.SetWaiting(ctx, e.ID, WaitExternalEvent("t", "e"))
	if !errors.Is(err, ErrNotReplicated) || got == nil || got.Status != StatusRunning {
		t.Fatalf("a wait taking a kept event without a replica: %v %v", got, err)
	}
}
