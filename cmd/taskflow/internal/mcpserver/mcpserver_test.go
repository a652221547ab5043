package mcpserver

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/agenttool"
)

// client is an MCP client connected in memory to the server, as a host
// would be.
type client struct {
	t       *testing.T
	cs      *mcp.ClientSession
	updates chan string // URIs of notifications/resources/updated
}

func connect(t *testing.T, s *Server) *client {
	t.Helper()
	ctx := context.Background()
	st, ct := mcp.NewInMemoryTransports()
	ss, err := s.MCP().Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, updates: make(chan string, 64)}
	mc := mcp.NewClient(&mcp.Implementation{Name: "test-host", Version: "1"}, &mcp.ClientOptions{
		ResourceUpdatedHandler: func(_ context.Context, req *mcp.ResourceUpdatedNotificationRequest) {
			c.updates <- req.Params.URI
		},
	})
	c.cs, err = mc.Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.cs.Close()
		_ = ss.Wait()
	})
	return c
}

// call calls a tool and returns its structured result; isErr says whether
// the call must be refused (then the text is returned in "error").
func (c *client) call(name string, args map[string]any, isErr bool) map[string]any {
	c.t.Helper()
	res, err := c.cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		c.t.Fatalf("CallTool(%s): %v", name, err)
	}
	text := ""
	if len(res.Content) == 1 {
		if tc, ok := res.Content[0].(*mcp.TextContent); ok {
			text = tc.Text
		}
	}
	if res.IsError != isErr {
		c.t.Fatalf("CallTool(%s, %v): isError %v, want %v: %s", name, args, res.IsError, isErr, text)
	}
	if isErr {
		return map[string]any{"error": text}
	}
	// The structured content and the text carry the same result.
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		c.t.Fatal(err)
	}
	var structured, fromText map[string]any
	if err := json.Unmarshal(b, &structured); err != nil {
		c.t.Fatalf("structured content %s: %v", b, err)
	}
	if err := json.Unmarshal([]byte(text), &fromText); err != nil || len(fromText) != len(structured) {
		c.t.Fatalf("text %q vs structured %s", text, b)
	}
	// It conforms to the tool's output schema.
	if err := outputSchemas(c.t)[name].Validate(structured); err != nil {
		c.t.Fatalf("%s's result %s does not match its output schema: %v", name, b, err)
	}
	return structured
}

func flowOf(t *testing.T, res map[string]any) map[string]any {
	t.Helper()
	f, ok := res["flow"].(map[string]any)
	if !ok || res["ok"] != true {
		t.Fatalf("no flow in %v", res)
	}
	return f
}

func newServer(t *testing.T, m *taskflow.Manager, set agenttool.Set) *Server {
	t.Helper()
	s, err := New(Config{Manager: m, AgentID: "kate", Tools: set})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestServerInProcess(t *testing.T) {
	eachBackend(t, func(t *testing.T, m *taskflow.Manager) {
		ctx := context.Background()
		s := newServer(t, m, agenttool.PerAction)
		a, b := connect(t, s), connect(t, s)

		// The tools, with their annotations and output schemas.
		tools, err := a.cs.ListTools(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]*mcp.Tool{}
		for _, tl := range tools.Tools {
			byName[tl.Name] = tl
			if tl.OutputSchema == nil || tl.InputSchema == nil || tl.Annotations == nil || tl.Description == "" {
				t.Fatalf("tool %s lacks a schema, annotations or description", tl.Name)
			}
		}
		if len(byName) != len(agenttool.Actions()) {
			t.Fatalf("%d tools: %v", len(byName), byName)
		}
		if an := byName["taskflow_status"].Annotations; !an.ReadOnlyHint || *an.DestructiveHint {
			t.Fatalf("status annotations %+v", an)
		}
		if an := byName["taskflow_cancel"].Annotations; an.ReadOnlyHint || !*an.DestructiveHint || !an.IdempotentHint {
			t.Fatalf("cancel annotations %+v", an)
		}

		// Every action.
		f := flowOf(t, a.call("taskflow_start", map[string]any{"controller_id": "kate/triage", "goal": "triage", "state": map[string]any{"n": 0}}, false))
		id := f["id"].(string)
		uri := ResourcePrefix + id
		if f["status"] != "running" {
			t.Fatalf("start: %v", f)
		}
		if f = flowOf(t, a.call("taskflow_status", map[string]any{"flow_id": id}, false)); f["id"] != id {
			t.Fatalf("status: %v", f)
		}

		// Read the flow as a resource, and subscribe to it.
		rr, err := a.cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: uri})
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Flow   map[string]any   `json:"flow"`
			Events []map[string]any `json:"events"`
		}
		if len(rr.Contents) != 1 || rr.Contents[0].MIMEType != "application/json" ||
			json.Unmarshal([]byte(rr.Contents[0].Text), &body) != nil || body.Flow["id"] != id ||
			len(body.Events) != 2 || body.Events[0]["kind"] != "started" || body.Events[0]["lease"] != nil {
			t.Fatalf("resource: %+v", rr.Contents[0])
		}
		// An event's id is a JSON number like its revision, as the CLI's
		// --json gives it; the numbers are the library's ids.
		evs, err := m.ListEvents(ctx, mustUUID(t, id), ResourceEvents)
		if err != nil || len(evs) != len(body.Events) {
			t.Fatalf("ListEvents: %d events, %v", len(evs), err)
		}
		for i, ev := range body.Events {
			n, ok := ev["id"].(float64)
			if _, rok := ev["revision"].(float64); !ok || !rok || strconv.FormatFloat(n, 'f', -1, 64) != evs[i].ID {
				t.Fatalf("resource event %d: id %#v, revision %#v; want the numbers %s, %d", i, ev["id"], ev["revision"], evs[i].ID, evs[i].Revision)
			}
		}
		if err := a.cs.Subscribe(ctx, &mcp.SubscribeParams{URI: uri}); err != nil {
			t.Fatal(err)
		}
		f = flowOf(t, a.call("taskflow_advance", map[string]any{"flow_id": id, "patch": map[string]any{"n": 1}, "current_step": "two"}, false))
		if f["current_step"] != "two" {
			t.Fatalf("advance: %v", f)
		}
		wantUpdate(t, a, uri)

		f = flowOf(t, a.call("taskflow_wait", map[string]any{"flow_id": id, "wait_condition": map[string]any{"kind": "manual"}}, false))
		if f["status"] != "waiting" {
			t.Fatalf("wait: %v", f)
		}
		wantUpdate(t, a, uri)
		a.call("taskflow_finish", map[string]any{"flow_id": id}, true) // waiting: refused, with a hint
		f = flowOf(t, a.call("taskflow_cancel", map[string]any{"flow_id": id}, false))
		if f["status"] != "cancelled" {
			t.Fatalf("cancel: %v", f)
		}
		wantUpdate(t, a, uri)

		id2 := flowOf(t, a.call("taskflow_start", map[string]any{"controller_id": "kate/c", "goal": "g2"}, false))["id"].(string)
		if f = flowOf(t, a.call("taskflow_finish", map[string]any{"flow_id": id2, "final_state": map[string]any{"done": true}}, false)); f["status"] != "finished" {
			t.Fatalf("finish: %v", f)
		}
		id3 := flowOf(t, a.call("taskflow_start", map[string]any{"controller_id": "kate/c", "goal": "g3"}, false))["id"].(string)
		if f = flowOf(t, a.call("taskflow_fail", map[string]any{"flow_id": id3, "reason": "no"}, false)); f["status"] != "failed" {
			t.Fatalf("fail: %v", f)
		}
		if l := a.call("taskflow_list_mine", nil, false); l["count"] != float64(3) {
			t.Fatalf("list_mine: %v", l)
		}
		res, err := a.cs.ListResources(ctx, nil)
		if err != nil || len(res.Resources) != 3 {
			t.Fatalf("resources/list: %v %v", res, err)
		}
		// Bad arguments come back as a tool error the model can read.
		if e := a.call("taskflow_start", map[string]any{"controller_id": "kate/c"}, true); !strings.Contains(e["error"].(string), "goal cannot be empty") {
			t.Fatalf("start without goal: %v", e)
		}

		// Another session is refused the flow every way, and sees nothing.
		e := b.call("taskflow_status", map[string]any{"flow_id": id}, true)
		if !strings.Contains(e["error"].(string), "belongs to a different session") || strings.Contains(e["error"].(string), "triage") {
			t.Fatalf("other session's status: %v", e)
		}
		b.call("taskflow_cancel", map[string]any{"flow_id": id2}, true)
		if _, err := b.cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: uri}); err == nil || !strings.Contains(err.Error(), "different session") {
			t.Fatalf("other session's read: %v", err)
		}
		if err := b.cs.Subscribe(ctx, &mcp.SubscribeParams{URI: ResourcePrefix + id2}); err == nil {
			t.Fatal("another session subscribed to the flow")
		}
		if l := b.call("taskflow_list_mine", map[string]any{}, false); l["count"] != float64(0) {
			t.Fatalf("other session's list_mine: %v", l)
		}
		if res, err := b.cs.ListResources(ctx, nil); err != nil || len(res.Resources) != 0 {
			t.Fatalf("other session's resources: %v %v", res, err)
		}
		// A missing flow is a resource-not-found.
		if _, err := a.cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: ResourcePrefix + "00000000-0000-4000-8000-000000000000"}); err == nil {
			t.Fatal("read a missing flow")
		}

		// After unsubscribing, no more notifications; the watch stops.
		if err := a.cs.Unsubscribe(ctx, &mcp.UnsubscribeParams{URI: uri}); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		n := len(s.watches)
		s.mu.Unlock()
		if n != 0 {
			t.Fatalf("%d watches left", n)
		}
	})
}

func wantUpdate(t *testing.T, c *client, uri string) {
	t.Helper()
	select {
	case got := <-c.updates:
		if got != uri {
			t.Fatalf("update for %s, want %s", got, uri)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no notifications/resources/updated for %s", uri)
	}
	// The tool's one mutation is one event: drain anything late.
	for {
		select {
		case <-c.updates:
		case <-time.After(50 * time.Millisecond):
			return
		}
	}
}

// The combined tool and the strict argument forms work through MCP too.
func TestServerCombinedTool(t *testing.T) {
	eachBackend(t, func(t *testing.T, m *taskflow.Manager) {
		s := newServer(t, m, agenttool.Combined)
		a := connect(t, s)
		tools, err := a.cs.ListTools(context.Background(), nil)
		if err != nil || len(tools.Tools) != 1 || tools.Tools[0].Name != agenttool.Name {
			t.Fatalf("tools %v %v", tools, err)
		}
		if an := tools.Tools[0].Annotations; an.ReadOnlyHint || !*an.DestructiveHint {
			t.Fatalf("annotations %+v", an)
		}
		f := flowOf(t, a.call("taskflow", map[string]any{"action": "start", "controller_id": "kate/c", "goal": "g", "state_json": `{"a":1}`}, false))
		if st := f["state"].(map[string]any); st["a"] != float64(1) {
			t.Fatalf("state %v", st)
		}
		a.call("taskflow", map[string]any{"action": "nope"}, true)

		// A session that goes away ends its subscriptions and the watch.
		if err := a.cs.Subscribe(context.Background(), &mcp.SubscribeParams{URI: ResourcePrefix + f["id"].(string)}); err != nil {
			t.Fatal(err)
		}
		if n := watchCount(s); n != 2 { // the flow's watch, and the session awaited
			t.Fatalf("%d watches and watched sessions", n)
		}
		_ = a.cs.Close()
		deadline := time.Now().Add(5 * time.Second)
		for watchCount(s) != 0 {
			if time.Now().After(deadline) {
				t.Fatal("the closed session's watch is still running")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func watchCount(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.watches) + len(s.watchers)
}

// A configured session id is shared by every connection; a session header
// names the session per request (tested over HTTP in the CLI's tests).
func TestServerFixedSession(t *testing.T) {
	eachBackend(t, func(t *testing.T, m *taskflow.Manager) {
		s, err := New(Config{Manager: m, AgentID: "kate", SessionID: "conv-1", Tools: agenttool.PerAction})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		a, b := connect(t, s), connect(t, s)
		id := flowOf(t, a.call("taskflow_start", map[string]any{"controller_id": "kate/c", "goal": "g"}, false))["id"].(string)
		flowOf(t, b.call("taskflow_status", map[string]any{"flow_id": id}, false))
		f, err := m.Get(context.Background(), mustUUID(t, id))
		if err != nil || f.OwnerSessionKey != "agent:kate:session:conv-1" {
			t.Fatalf("owner %v %v", f, err)
		}
	})
}

func TestNewRefusesBadConfig(t *testing.T) {
	m := taskflow.NewManager(nil)
	for _, c := range []Config{
		{AgentID: "kate"},
		{Manager: m},
		{Manager: m, AgentID: " "},
		{Manager: m, AgentID: "a:b"},
		{Manager: m, AgentID: "kate", SessionID: "  "},
		{Manager: m, AgentID: "kate", Tools: 7},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
	if err := Serve(context.Background(), Config{Manager: m, AgentID: "kate", Transport: "carrier-pigeon"}); err == nil {
		t.Error("an unknown transport was accepted")
	}
}

func mustUUID(t *testing.T, s string) uuid.UUID {
	t.Helper()
	id, err := uuid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Flows of flows through MCP: an agent spawns two children under its
// flow, lists them, waits on them; the host's workers finish them
// through the library, and the agent's flow resumes with the "children"
// summary, its resource notified. Another session can do none of it.
func TestServerChildren(t *testing.T) {
	eachBackend(t, func(t *testing.T, m *taskflow.Manager) {
		ctx := context.Background()
		s := newServer(t, m, agenttool.PerAction)
		a, b := connect(t, s), connect(t, s)

		parent := flowOf(t, a.call("taskflow_start", map[string]any{"controller_id": "kate/book", "goal": "write the book"}, false))["id"].(string)
		uri := ResourcePrefix + parent
		if err := a.cs.Subscribe(ctx, &mcp.SubscribeParams{URI: uri}); err != nil {
			t.Fatal(err)
		}
		spawn := map[string]any{"flow_id": parent, "children": []any{
			map[string]any{"key": "ch-1", "controller_id": "kate/chapter", "goal": "write chapter 1", "state": map[string]any{"n": 1}},
			map[string]any{"key": "ch-2", "controller_id": "kate/chapter", "goal": "write chapter 2", "on_parent_close": "abandon"},
		}}
		res := a.call("taskflow_spawn", spawn, false)
		kids := map[string]string{}
		for _, x := range res["flows"].([]any) {
			f := x.(map[string]any)
			if f["parent_id"] != parent || f["status"] != "running" {
				t.Fatalf("child %v", f)
			}
			kids[f["child_key"].(string)] = f["id"].(string)
		}
		if res["count"] != float64(2) || len(kids) != 2 {
			t.Fatalf("spawn: %v", res)
		}
		// Spawning again returns the same children.
		again := a.call("taskflow_spawn", spawn, false)["flows"].([]any)
		if again[0].(map[string]any)["id"] != kids["ch-1"] || again[1].(map[string]any)["id"] != kids["ch-2"] {
			t.Fatalf("repeated spawn: %v", again)
		}
		// The children are the session's flows, with their owner.
		p, err := m.Get(ctx, mustUUID(t, parent))
		if err != nil || p.Children != 2 || !strings.HasPrefix(p.OwnerSessionKey, "agent:kate:session:mcp-") {
			t.Fatalf("parent %+v %v", p, err)
		}
		for _, id := range kids {
			if f, err := m.Get(ctx, mustUUID(t, id)); err != nil || f.OwnerSessionKey != p.OwnerSessionKey || f.ParentID != p.ID {
				t.Fatalf("child %+v %v; parent's owner %q", f, err, p.OwnerSessionKey)
			}
		}

		// Another session can neither spawn under the flow, nor list or
		// wait on its children, nor touch a child.
		for _, c := range []struct {
			tool string
			args map[string]any
		}{
			{"taskflow_spawn", map[string]any{"flow_id": parent, "children": []any{map[string]any{"key": "x", "controller_id": "kate/c", "goal": "g"}}}},
			{"taskflow_list_children", map[string]any{"flow_id": parent}},
			{"taskflow_wait_children", map[string]any{"flow_id": parent}},
			{"taskflow_finish", map[string]any{"flow_id": kids["ch-1"]}},
		} {
			if e := b.call(c.tool, c.args, true); !strings.Contains(e["error"].(string), "belongs to a different session") {
				t.Fatalf("%s by another session: %v", c.tool, e)
			}
		}
		// A child given another owner is refused.
		e := a.call("taskflow_spawn", map[string]any{"flow_id": parent, "children": []any{
			map[string]any{"key": "x", "controller_id": "kate/c", "goal": "g", "owner_session_key": "agent:kate:session:other"}}}, true)
		if !strings.Contains(e["error"].(string), `does not take "owner_session_key"`) {
			t.Fatalf("child with an owner: %v", e)
		}

		// List them: both running, in start order.
		l := a.call("taskflow_list_children", map[string]any{"flow_id": parent}, false)
		list := l["children"].([]any)
		if l["count"] != float64(2) || l["next_cursor"] != "" || list[0].(map[string]any)["key"] != "ch-1" ||
			list[1].(map[string]any)["status"] != "running" || list[1].(map[string]any)["ended"] != false {
			t.Fatalf("list_children: %v", l)
		}

		// Wait on all of them.
		f := flowOf(t, a.call("taskflow_wait_children", map[string]any{"flow_id": parent, "timeout_seconds": 3600}, false))
		if w := f["wait"].(map[string]any); f["status"] != "waiting" || w["kind"] != "children" || w["at"] == nil {
			t.Fatalf("wait_children: %v", f)
		}
		wantUpdate(t, a, uri)

		// The host's workers finish the children through the library.
		if _, err := m.Finish(ctx, mustUUID(t, kids["ch-1"]), map[string]any{"words": 3000}); err != nil {
			t.Fatal(err)
		}
		if l := a.call("taskflow_list_children", map[string]any{"flow_id": parent, "limit": 1}, false); l["next_cursor"] == "" ||
			l["children"].([]any)[0].(map[string]any)["ended"] != true {
			t.Fatalf("first page after one finished: %v", l)
		}
		if f := flowOf(t, a.call("taskflow_status", map[string]any{"flow_id": parent}, false)); f["status"] != "waiting" {
			t.Fatalf("resumed after one of two: %v", f)
		}
		if _, err := m.Finish(ctx, mustUUID(t, kids["ch-2"]), map[string]any{"words": 2500}); err != nil {
			t.Fatal(err)
		}
		wantUpdate(t, a, uri)
		f = flowOf(t, a.call("taskflow_status", map[string]any{"flow_id": parent}, false))
		sum, _ := f["state"].(map[string]any)["children"].(map[string]any)
		if f["status"] != "running" || f["wait"] != nil || sum["why"] != "met" || sum["total"] != float64(2) || sum["finished"] != float64(2) ||
			sum["pending"] != float64(0) || len(sum["results"].([]any)) != 2 {
			t.Fatalf("the resumed flow: %v", f)
		}
		for _, r := range sum["results"].([]any) {
			r := r.(map[string]any)
			if r["status"] != "finished" || r["id"] != kids[r["key"].(string)] || r["state"].(map[string]any)["words"] == nil {
				t.Fatalf("result %v", r)
			}
		}

		// Children that end before the wait: the join is met at once and
		// the wait_children call returns the flow running again.
		p2 := flowOf(t, a.call("taskflow_start", map[string]any{"controller_id": "kate/book", "goal": "second book"}, false))["id"].(string)
		k2 := a.call("taskflow_spawn", map[string]any{"flow_id": p2, "children": []any{
			map[string]any{"key": "only", "controller_id": "kate/chapter", "goal": "g"}}}, false)["flows"].([]any)[0].(map[string]any)["id"].(string)
		if _, err := m.Finish(ctx, mustUUID(t, k2), nil); err != nil {
			t.Fatal(err)
		}
		f = flowOf(t, a.call("taskflow_wait_children", map[string]any{"flow_id": p2, "need": 1}, false))
		if sum, _ := f["state"].(map[string]any)["children"].(map[string]any); f["status"] != "running" || sum["why"] != "met" {
			t.Fatalf("a join met at once: %v", f)
		}
	})
}

// Explain through MCP: the agent asks why its flows are where they are
// (an event wait with an event kept under another topic, a manual wait,
// a ready child) with the per-action and the combined tool, each result
// checked against its output schema; an unknown flow is not_found, and
// another session is refused.
func TestServerExplain(t *testing.T) {
	eachBackend(t, func(t *testing.T, m *taskflow.Manager) {
		ctx := context.Background()
		actions, combined := newServer(t, m, agenttool.PerAction), newServer(t, m, agenttool.Combined)
		a, b := connect(t, actions), connect(t, actions)

		ev := flowOf(t, a.call("taskflow_start", map[string]any{"controller_id": "kate/mail", "goal": "wait for the reply"}, false))["id"].(string)
		a.call("taskflow_wait", map[string]any{"flow_id": ev,
			"wait_condition": map[string]any{"kind": "external_event", "topic": "email.reply", "correlation_id": "msg-1"}}, false)
		if _, err := m.TryResumeExternal(ctx, mustUUID(t, ev), agenttool.Topic("kate", "email.bounce"), "msg-1", nil); err != nil {
			t.Fatal(err)
		}
		x := explanationOf(t, a.call("taskflow_explain", map[string]any{"flow_id": ev}, false), ev)
		facts := x["facts"].(map[string]any)
		if x["status"] != "waiting" || x["code"] != "waiting_event" || x["stuck"] != false ||
			!strings.Contains(x["text"].(string), `waits on an event of topic "email.reply" with correlation id "msg-1"`) ||
			!strings.Contains(x["text"].(string), `near miss: topic "email.bounce"`) ||
			facts["topic"] != "email.reply" || facts["kept_unmatched"] != float64(1) {
			t.Fatalf("explain of an event wait: %v", x)
		}

		manual := flowOf(t, a.call("taskflow_start", map[string]any{"controller_id": "kate/ask", "goal": "ask a human"}, false))["id"].(string)
		a.call("taskflow_wait", map[string]any{"flow_id": manual, "wait_condition": map[string]any{"kind": "manual"}}, false)
		x = explanationOf(t, a.call("taskflow_explain", map[string]any{"flow_id": manual}, false), manual)
		if x["code"] != "waiting_manual" || x["stuck"] != false || !strings.Contains(x["text"].(string), "waits for a person") {
			t.Fatalf("explain of a manual wait: %v", x)
		}

		// A child, ready on its controller's queue, through the combined tool.
		kid := a.call("taskflow_spawn", map[string]any{"flow_id": manual, "children": []any{
			map[string]any{"key": "k", "controller_id": "kate/helper", "goal": "help"}}}, false)["flows"].([]any)[0].(map[string]any)["id"].(string)
		c := connect(t, combined)
		// The combined server's session is another one: refused, as from b.
		for _, r := range []map[string]any{
			b.call("taskflow_explain", map[string]any{"flow_id": ev}, true),
			c.call("taskflow", map[string]any{"action": "explain", "flow_id": kid}, true),
		} {
			if e := r["error"].(string); !strings.Contains(e, "belongs to a different session") || strings.Contains(e, "email") {
				t.Fatalf("explain by another session: %v", e)
			}
		}
		x = explanationOf(t, a.call("taskflow_explain", map[string]any{"flow_id": kid}, false), kid)
		if x["code"] != "ready" || x["facts"].(map[string]any)["parent_id"] != manual || !strings.Contains(x["text"].(string), `"kate/helper"`) {
			t.Fatalf("explain of a ready child: %v", x)
		}
		own := flowOf(t, c.call("taskflow", map[string]any{"action": "start", "controller_id": "kate/c", "goal": "g"}, false))["id"].(string)
		x = explanationOf(t, c.call("taskflow", map[string]any{"action": "explain", "flow_id": own}, false), own)
		if x["status"] != "running" || x["code"] != "ready" {
			t.Fatalf("explain through the combined tool: %v", x)
		}

		// An unknown flow.
		missing := uuid.NewString()
		if res := a.call("taskflow_explain", map[string]any{"flow_id": missing}, false); res["ok"] != false || res["error"] != "not_found" || res["flow_id"] != missing {
			t.Fatalf("explain of an unknown flow: %v", res)
		}
		a.call("taskflow_explain", map[string]any{"flow_id": ev, "reason": "x"}, true) // takes only flow_id
	})
}

// explanationOf returns the explanation of an explain result, after
// checking that it names flow id.
func explanationOf(t *testing.T, res map[string]any, id string) map[string]any {
	t.Helper()
	x, ok := res["explanation"].(map[string]any)
	if !ok || res["ok"] != true || x["flow_id"] != id || x["text"] == "" || x["moves"] == "" {
		t.Fatalf("no explanation of %s in %v", id, res)
	}
	return x
}

// TestServerSchedules: an agent schedules its own follow-ups through the
// MCP tools; another conversation neither sees nor deletes them.
func TestServerSchedules(t *testing.T) {
	eachBackend(t, func(t *testing.T, m *taskflow.Manager) {
		ctx := context.Background()
		actions, combined := newServer(t, m, agenttool.PerAction), newServer(t, m, agenttool.Combined)
		a, b, c := connect(t, actions), connect(t, actions), connect(t, combined)

		res := a.call("taskflow_schedule", map[string]any{"name": "digest", "cron": "0 8 * * *", "time_zone": "Europe/Madrid",
			"controller_id": "kate/digest", "goal": "send the digest", "state": map[string]any{"to": "me"}}, false)
		sc := res["schedule"].(map[string]any)
		if res["ok"] != true || sc["name"] != "digest" || sc["time_zone"] != "Europe/Madrid" || sc["next_fire"] == "" {
			t.Fatalf("schedule: %v", res)
		}
		a.call("taskflow_schedule", map[string]any{"name": "poll", "every_seconds": 600, "controller_id": "kate/poll", "goal": "poll"}, false)
		list := a.call("taskflow_list_schedules", map[string]any{}, false)
		if list["count"] != float64(2) {
			t.Fatalf("list_schedules: %v", list)
		}
		// The other conversations see none and delete nothing.
		for _, r := range []map[string]any{
			b.call("taskflow_list_schedules", map[string]any{}, false),
			c.call("taskflow", map[string]any{"action": "list_schedules"}, false),
		} {
			if r["count"] != float64(0) || len(r["schedules"].([]any)) != 0 {
				t.Fatalf("another session lists %v", r)
			}
		}
		for _, r := range []map[string]any{
			b.call("taskflow_unschedule", map[string]any{"name": "digest"}, false),
			c.call("taskflow", map[string]any{"action": "unschedule", "name": "digest"}, false),
		} {
			if r["ok"] != false || r["error"] != "not_found" || r["name"] != "digest" {
				t.Fatalf("another session's unschedule: %v", r)
			}
		}
		all, _, err := m.ListSchedules(ctx)
		if err != nil || len(all) != 2 {
			t.Fatalf("schedules in the flow space: %d %v", len(all), err)
		}
		for _, sc := range all {
			if !strings.HasPrefix(sc.Flow.OwnerSessionKey, "agent:kate:session:") || !strings.HasPrefix(sc.Flow.ControllerID, "kate/") {
				t.Fatalf("stored %+v", sc.Flow)
			}
		}
		// Another agent's controller is refused.
		if r := a.call("taskflow_schedule", map[string]any{"name": "x", "every_seconds": 600, "controller_id": "bob/x", "goal": "g"}, true); !strings.Contains(r["error"].(string), "outside this agent's namespace") {
			t.Fatalf("schedule of another agent's controller: %v", r)
		}
		// The owner deletes its own.
		if r := a.call("taskflow_unschedule", map[string]any{"name": "digest"}, false); r["ok"] != true || r["deleted"] != true {
			t.Fatalf("unschedule: %v", r)
		}
		if r := a.call("taskflow_list_schedules", map[string]any{}, false); r["count"] != float64(1) {
			t.Fatalf("after unschedule: %v", r)
		}
	})
}

// Finding flows through MCP: flows started with search attributes are
// listed by list_mine's filters (controller, attribute, status) and paged
// with its cursor, each result checked against its output schema; a
// session sees none of another's flows whatever it filters on, nor of
// the host's.
func TestServerFind(t *testing.T) {
	eachBackend(t, func(t *testing.T, m *taskflow.Manager) {
		ctx := context.Background()
		actions, combined := newServer(t, m, agenttool.PerAction), newServer(t, m, agenttool.Combined)
		a, b, c := connect(t, actions), connect(t, actions), connect(t, combined)
		start := func(cl *client, tool, controller string, attrs map[string]any) string {
			t.Helper()
			time.Sleep(2 * time.Millisecond) // list_mine orders by creation time, in ms
			args := map[string]any{"controller_id": controller, "goal": "send the invoice", "attributes": attrs}
			if tool == "taskflow" {
				args["action"] = "start"
			}
			f := flowOf(t, cl.call(tool, args, false))
			if got, _ := f["attributes"].(map[string]any); got["customer"] != attrs["customer"] {
				t.Fatalf("started with attributes %v: %v", attrs, f)
			}
			return f["id"].(string)
		}
		acme := map[string]any{"customer": "acme"}
		a1 := start(a, "taskflow_start", "kate/invoices", map[string]any{"customer": "acme", "region": "eu"})
		start(a, "taskflow_start", "kate/invoices", map[string]any{"customer": "globex"})
		start(a, "taskflow_start", "kate/refunds", acme)
		a4 := start(a, "taskflow_start", "kate/invoices", acme)
		a.call("taskflow_wait", map[string]any{"flow_id": a4, "wait_condition": map[string]any{"kind": "manual"}}, false)
		b1 := start(b, "taskflow_start", "kate/invoices", acme)
		c1 := start(c, "taskflow", "kate/invoices", acme)
		if _, err := m.CreateManaged(ctx, taskflow.CreateManagedInput{ControllerID: "kate/invoices", Goal: "the host's",
			OwnerSessionKey: "agent:kate:session:host", Attributes: map[string]string{"customer": "acme"}}); err != nil {
			t.Fatal(err)
		}

		ids := func(res map[string]any) []string {
			var out []string
			for _, f := range res["flows"].([]any) {
				out = append(out, f.(map[string]any)["id"].(string))
			}
			if res["count"] != float64(len(out)) {
				t.Fatalf("count %v, %d flows", res["count"], len(out))
			}
			return out
		}
		filter := map[string]any{"controller_id": "kate/invoices", "attribute": "customer=acme"}
		if got := ids(a.call("taskflow_list_mine", filter, false)); strings.Join(got, ",") != a4+","+a1 {
			t.Fatalf("a's acme invoices: %v, want %v", got, []string{a4, a1})
		}
		if got := ids(a.call("taskflow_list_mine", map[string]any{"attribute": "customer=acme", "status": "waiting"}, false)); strings.Join(got, ",") != a4 {
			t.Fatalf("a's waiting acme flows: %v", got)
		}
		if got := ids(b.call("taskflow_list_mine", filter, false)); strings.Join(got, ",") != b1 {
			t.Fatalf("b's acme invoices: %v, want only its own %s", got, b1)
		}
		combinedArgs := map[string]any{"action": "list_mine", "controller_id": "kate/invoices", "attribute": "customer=acme"}
		if got := ids(c.call("taskflow", combinedArgs, false)); strings.Join(got, ",") != c1 {
			t.Fatalf("the combined tool's session: %v, want only %s", got, c1)
		}

		// Pages of one, filters kept, each flow once; the strict form's
		// nulls are taken.
		var got []string
		cursor := any(nil)
		for pages := 0; ; pages++ {
			if pages > 5 {
				t.Fatal("too many pages")
			}
			res := a.call("taskflow_list_mine", map[string]any{"controller_id": "kate/invoices", "attribute": "customer=acme",
				"status": nil, "limit": 1, "cursor": cursor}, false)
			got = append(got, ids(res)...)
			next, _ := res["next_cursor"].(string)
			if res["truncated"] != (next != "") {
				t.Fatalf("truncated %v, next_cursor %q", res["truncated"], next)
			}
			if next == "" {
				break
			}
			cursor = next
		}
		if strings.Join(got, ",") != a4+","+a1 {
			t.Fatalf("paged %v, want %v", got, []string{a4, a1})
		}

		// Bad filters are refused with what to fix.
		for want, bad := range map[string]map[string]any{
			`"attribute" must be "name=value"`: {"attribute": "customer"},
			`use one of created`:               {"status": "stuck"},
			`is not a next_cursor`:             {"cursor": "nonsense"},
		} {
			if e := a.call("taskflow_list_mine", bad, true)["error"].(string); !strings.Contains(e, want) {
				t.Fatalf("list_mine %v: %q, want %q", bad, e, want)
			}
		}
		if e := a.call("taskflow_start", map[string]any{"controller_id": "kate/x", "goal": "g", "attributes": map[string]any{"n": 2}}, true)["error"].(string); !strings.Contains(e, "must be a string") {
			t.Fatalf("a number attribute: %q", e)
		}
	})
}
