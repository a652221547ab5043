package taskflow

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

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
		if cs, err := e.client.XInfoConsumers(e.ctx, e.store.keys.bridge(), DefaultBridgeGroup).Result(); err != nil || len(cs) != 0 {
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
		if err := dead.XGroupCreateMkStream(e.ctx, stream, DefaultBridgeGroup, "0").Err(); err != nil {
			t.Fatal(err)
		}
		res := must(t, try(dead.XReadGroup(e.ctx, &redis.XReadGroupArgs{
			Group: DefaultBridgeGroup, Consumer: "dead", Streams: []string{stream, ">"}, Count: 10, Block: -1,
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
		pending := must(t, try(e.client.XPending(e.ctx, stream, DefaultBridgeGroup).Result()))
		if pending.Count != 0 {
			t.Fatalf("%d messages still pending", pending.Count)
		}
	})
}
