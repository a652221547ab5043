package agenttool

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

// TestEventsReachOnlyTheirAgent: a session of another agent that
// waits on the victim's topic and correlation id is not resumed when the
// host publishes the victim's event, and never reads its payload; the
// victim is resumed, sees its own topic, and the host reaches it through
// Topic by every resume path.
func TestEventsReachOnlyTheirAgent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		tool := New(e.m)
		victim := Session{AgentID: "kate", SessionID: "inbox"}
		thief := Session{AgentID: "mallory", SessionID: "1"}
		wait := map[string]any{"kind": "external_event", "topic": "email.reply", "correlation_id": "msg-8812"}
		start := func(s Session) string {
			return startFlow(t, tool, s, "g")
		}
		v, th := start(victim), start(thief)
		vf := callFlow(t, tool, victim, args(t, "action", "wait", "flow_id", v, "wait_condition", wait))
		callFlow(t, tool, thief, args(t, "action", "wait", "flow_id", th, "wait_condition", wait))
		// The model sees the topic it set.
		if shown, _ := vf["wait"].(map[string]any); shown["topic"] != "email.reply" {
			t.Fatalf("the victim's wait reads %v", vf["wait"])
		}

		// The host publishes the victim's reply by correlation.
		got := must(t, try(e.m.ResumeByCorrelation(ctx, Topic("kate", "email.reply"), "msg-8812", map[string]string{"secret": "s3cr3t"})))
		if len(got) != 1 || got[0].ID.String() != v {
			t.Fatalf("resumed %d flows, want the victim's only", len(got))
		}
		st := callFlow(t, tool, thief, args(t, "action", "status", "flow_id", th))
		raw, _ := json.Marshal(st)
		if st["status"] != "waiting" || strings.Contains(string(raw), "s3cr3t") {
			t.Fatalf("the other agent's session got the event: %s", raw)
		}
		if st := callFlow(t, tool, victim, args(t, "action", "status", "flow_id", v)); st["status"] != "running" {
			t.Fatalf("the victim was not resumed: %v", st["status"])
		}

		// The other agent's own event reaches it, by flow id too.
		id := uuid.MustParse(th)
		if f := must(t, try(e.m.TryResumeExternal(ctx, id, Topic("kate", "email.reply"), "msg-8812", nil))); f != nil {
			t.Fatal("kate's topic resumed mallory's flow")
		}
		if f := must(t, try(e.m.TryResumeExternal(ctx, id, Topic(" mallory ", "email.reply"), "msg-8812", nil))); f == nil {
			t.Fatal("mallory's own topic did not resume her flow")
		}
		// And through the bridge.
		callFlow(t, tool, victim, args(t, "action", "wait", "flow_id", v, "wait_condition", wait))
		if err := e.m.PublishResume(ctx, taskflow.ResumeRequest{Topic: Topic("kate", "email.reply"), CorrelationID: "msg-8812"}); err != nil {
			t.Fatal(err)
		}
		bctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- e.engine(taskflow.WithBridgeBlock(10 * time.Millisecond)).RunResumeBridge(bctx) }()
		defer func() { stop(); <-done }()
		for i := 0; i < 500; i++ {
			if f := must(t, try(e.m.Get(ctx, uuid.MustParse(v)))); f.Status == taskflow.StatusRunning {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatal("the bridge did not resume the victim")
	})
}

// TestControllersScoped: a session may start flows only for the
// controllers the host lets it name; by default its own agent's
// namespace, so no tenant can put work on another's ready queues.
func TestControllersScoped(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		thief := Session{AgentID: "mallory", SessionID: "1"}
		tool := New(e.m)
		for _, ctl := range []string{"kate/inbox-triage", "kate", "mallory", "mallory/", "malloryx/a", "/x"} {
			before := e.dump()
			err := callErr(t, tool, thief, args(t, "action", "start", "controller_id", ctl, "goal", "g"), ErrArgs)
			wantText(t, err, `"mallory/"`)
			e.sameDump(t, before, "a refused start")
		}
		if f, _, err := e.m.Claim(ctx, "kate/inbox-triage", "kate-worker", time.Minute, taskflow.WithClaimWait(0)); err != nil || f != nil {
			t.Fatalf("kate's worker claimed %v (%v)", f, err)
		}
		if f := callFlow(t, tool, thief, args(t, "action", "start", "controller_id", " mallory/job ", "goal", "g")); f["controller_id"] != "mallory/job" {
			t.Fatalf("own namespace refused: %v", f)
		}
		// An agent id with '/' would share another's namespace.
		nested := Session{AgentID: "mallory/x", SessionID: "1"}
		wantText(t, callErr(t, tool, nested, args(t, "action", "start", "controller_id", "mallory/x/job", "goal", "g"), ErrArgs), "contains '/'")

		// A list the host configures replaces the namespace rule.
		listed := New(e.m, WithAllowedControllers(" shared/queue ", "", "shared/queue"))
		callFlow(t, listed, thief, args(t, "action", "start", "controller_id", "shared/queue", "goal", "g"))
		err := callErr(t, listed, thief, args(t, "action", "start", "controller_id", "mallory/job", "goal", "g"), ErrArgs)
		wantText(t, err, `"shared/queue"`)
		callErr(t, New(e.m, WithAllowedControllers()), thief, args(t, "action", "start", "controller_id", "mallory/job", "goal", "g"), ErrArgs)

		// So does a rule per session.
		policy := New(e.m, WithControllerPolicy(func(s Session, id string) bool {
			return s.SessionID == "1" && id == "ops/"+s.AgentID
		}), WithControllerPolicy(nil))
		callFlow(t, policy, thief, args(t, "action", "start", "controller_id", "ops/mallory", "goal", "g"))
		callErr(t, policy, thief, args(t, "action", "start", "controller_id", "ops/kate", "goal", "g"), ErrArgs)
	})
}
