package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/taskflow-dev/taskflow/agenttool"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/mcpserver"
)

// mcpClient is a host's client of the built binary's MCP server.
type mcpClient struct {
	t       *testing.T
	cs      *mcp.ClientSession
	updates chan string
}

func newMCPClient(t *testing.T, transport mcp.Transport) *mcpClient {
	t.Helper()
	c := &mcpClient{t: t, updates: make(chan string, 64)}
	client := mcp.NewClient(&mcp.Implementation{Name: "test-host", Version: "1"}, &mcp.ClientOptions{
		ResourceUpdatedHandler: func(_ context.Context, req *mcp.ResourceUpdatedNotificationRequest) {
			c.updates <- req.Params.URI
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := client.Connect(ctx, transport, nil)
	if err != nil {
		t.Fatalf("connecting to taskflow mcp: %v", err)
	}
	c.cs = cs
	t.Cleanup(func() { _ = cs.Close() })
	return c
}

// call calls a tool; it must succeed unless refused is set.
func (c *mcpClient) call(name string, args map[string]any, refused bool) map[string]any {
	c.t.Helper()
	res, err := c.cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		c.t.Fatalf("CallTool(%s): %v", name, err)
	}
	text := res.Content[0].(*mcp.TextContent).Text
	if res.IsError != refused {
		c.t.Fatalf("CallTool(%s, %v): isError %v: %s", name, args, res.IsError, text)
	}
	if refused {
		return map[string]any{"error": text}
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(text), &out); err != nil || out["ok"] != true {
		c.t.Fatalf("CallTool(%s) = %s", name, text)
	}
	return out
}

func (c *mcpClient) start(goal string) string {
	c.t.Helper()
	res := c.call("taskflow_start", map[string]any{"controller_id": "kate/mcp", "goal": goal}, false)
	return res["flow"].(map[string]any)["id"].(string)
}

// The stdio server as a host runs it: the built binary spawned as a
// subprocess, one per conversation.
func TestMCPStdio(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		spawn := func(session string) *mcpClient {
			cmd := exec.Command(binPath, "mcp", "--redis", e.url, "--prefix", e.prefix, "--agent", "kate", "--session-id", session)
			cmd.Env = cliEnv()
			return newMCPClient(t, &mcp.CommandTransport{Command: cmd})
		}
		a, b := spawn("conv-a"), spawn("conv-b")
		tools, err := a.cs.ListTools(context.Background(), nil)
		if err != nil || len(tools.Tools) != len(agenttool.Actions()) {
			t.Fatalf("tools: %v %v", tools, err)
		}
		id := a.start("stdio <b> & more")
		uri := mcpserver.ResourcePrefix + id
		if err := a.cs.Subscribe(context.Background(), &mcp.SubscribeParams{URI: uri}); err != nil {
			t.Fatal(err)
		}
		// A misspelt argument is refused, not ignored.
		if r := a.call("taskflow_advance", map[string]any{"flow_id": id, "next_step": "two"}, true); !strings.Contains(r["error"].(string), `"next_step"`) {
			t.Fatalf("next_step: %v", r)
		}
		// A change made elsewhere (here: the CLI's cancel) is notified.
		e.run("cancel", id).wantCode(t, 0)
		select {
		case got := <-a.updates:
			if got != uri {
				t.Fatalf("update for %s", got)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no change notification")
		}
		rr, err := a.cs.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: uri})
		if err != nil || !strings.Contains(rr.Contents[0].Text, `"status":"cancelled"`) {
			t.Fatalf("resource: %v %v", rr, err)
		}
		// The goal reads as written, not HTML-escaped.
		if text := rr.Contents[0].Text; !strings.Contains(text, `"goal":"stdio <b> & more"`) {
			t.Fatalf("resource's goal is not as written: %s", text)
		}
		// The flow is the session's: the other conversation is refused.
		refusal := b.call("taskflow_status", map[string]any{"flow_id": id}, true)
		if !strings.Contains(refusal["error"].(string), "belongs to a different session") {
			t.Fatalf("refusal: %v", refusal)
		}
		if _, err := b.cs.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: uri}); err == nil {
			t.Fatal("the other session read the flow")
		}
		if f := e.get(mustParseID(t, id)); f.OwnerSessionKey != "agent:kate:session:conv-a" {
			t.Fatalf("owner %q", f.OwnerSessionKey)
		}
	})
}

// Streamable HTTP: each MCP session is its own taskflow session unless the
// operator lets clients name theirs with a header.
func TestMCPHTTP(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cmd := exec.CommandContext(ctx, binPath, "mcp", "--transport", "http", "--addr", "127.0.0.1:0",
			"--redis", e.url, "--prefix", e.prefix, "--agent", "kate", "--session-header", "Taskflow-Session")
		cmd.Env = cliEnv()
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); _ = cmd.Wait() }()
		sc := bufio.NewScanner(stderr)
		var endpoint string
		for sc.Scan() {
			if _, after, ok := strings.Cut(sc.Text(), "serving streamable HTTP on "); ok {
				endpoint = after
				break
			}
		}
		if endpoint == "" {
			t.Fatal("the server did not say where it listens")
		}
		go func() {
			for sc.Scan() {
			}
		}()
		dial := func(session string) *mcpClient {
			hc := &http.Client{}
			if session != "" {
				hc.Transport = headerTransport{"Taskflow-Session", session}
			}
			return newMCPClient(t, &mcp.StreamableClientTransport{Endpoint: endpoint, HTTPClient: hc})
		}
		// Without the header: the MCP session's id, one per connection.
		p, q := dial(""), dial("")
		id := p.start("http")
		p.call("taskflow_status", map[string]any{"flow_id": id}, false)
		q.call("taskflow_status", map[string]any{"flow_id": id}, true)
		// With it: the named session, across connections.
		x1, x2, y := dial("user-x"), dial("user-x"), dial("user-y")
		idx := x1.start("named")
		x2.call("taskflow_advance", map[string]any{"flow_id": idx, "current_step": "two"}, false)
		y.call("taskflow_status", map[string]any{"flow_id": idx}, true)
		if l := y.call("taskflow_list_mine", nil, false); l["count"] != float64(0) {
			t.Fatalf("user-y sees %v", l)
		}
		if f := e.get(mustParseID(t, idx)); f.OwnerSessionKey != "agent:kate:session:user-x" || f.CurrentStep != "two" {
			t.Fatalf("flow %+v", f)
		}
	})
}

// Flows of flows through the built binary: the agent spawns two
// children under its flow, lists them and waits on them; the host's
// workers finish them through the library, and the agent sees its flow
// running again with the "children" summary. Another conversation is
// refused the flow's children.
func TestMCPStdioChildren(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		spawn := func(session string) *mcpClient {
			cmd := exec.Command(binPath, "mcp", "--redis", e.url, "--prefix", e.prefix, "--agent", "kate", "--session-id", session)
			cmd.Env = cliEnv()
			return newMCPClient(t, &mcp.CommandTransport{Command: cmd})
		}
		a, b := spawn("conv-a"), spawn("conv-b")
		parent := a.start("write the book")
		res := a.call("taskflow_spawn", map[string]any{"flow_id": parent, "children": []any{
			map[string]any{"key": "ch-1", "controller_id": "kate/chapter", "goal": "write chapter 1"},
			map[string]any{"key": "ch-2", "controller_id": "kate/chapter", "goal": "write chapter 2", "state": map[string]any{"draft": true}},
		}}, false)
		flows := res["flows"].([]any)
		if res["count"] != float64(2) || len(flows) != 2 {
			t.Fatalf("spawn: %v", res)
		}
		var kids []string
		for i, x := range flows {
			f := x.(map[string]any)
			if f["parent_id"] != parent || f["child_key"] != fmt.Sprint("ch-", i+1) || f["status"] != "running" {
				t.Fatalf("child %d: %v", i, f)
			}
			kids = append(kids, f["id"].(string))
			if stored := e.get(mustParseID(t, f["id"].(string))); stored.OwnerSessionKey != "agent:kate:session:conv-a" || stored.ParentID.String() != parent {
				t.Fatalf("stored child %+v", stored)
			}
		}
		l := a.call("taskflow_list_children", map[string]any{"flow_id": parent}, false)
		if l["count"] != float64(2) || l["children"].([]any)[0].(map[string]any)["id"] != kids[0] {
			t.Fatalf("list_children: %v", l)
		}
		if r := b.call("taskflow_spawn", map[string]any{"flow_id": parent, "children": []any{
			map[string]any{"key": "x", "controller_id": "kate/chapter", "goal": "g"}}}, true); !strings.Contains(r["error"].(string), "belongs to a different session") {
			t.Fatalf("the other conversation's spawn: %v", r)
		}
		b.call("taskflow_list_children", map[string]any{"flow_id": parent}, true)

		w := a.call("taskflow_wait_children", map[string]any{"flow_id": parent}, false)["flow"].(map[string]any)
		if w["status"] != "waiting" {
			t.Fatalf("wait_children: %v", w)
		}
		for i, id := range kids {
			if _, err := e.m.Finish(context.Background(), mustParseID(t, id), map[string]any{"chapter": i + 1}); err != nil {
				t.Fatal(err)
			}
		}
		f := a.call("taskflow_status", map[string]any{"flow_id": parent}, false)["flow"].(map[string]any)
		sum, _ := f["state"].(map[string]any)["children"].(map[string]any)
		if f["status"] != "running" || sum["why"] != "met" || sum["finished"] != float64(2) || len(sum["results"].([]any)) != 2 {
			t.Fatalf("the resumed flow: %v", f)
		}
	})
}

// Explain through the built binary: the agent's flow waits on an event,
// the host sends it one under another topic, and explain says what the
// flow waits for (the topic as the agent set it) and names the near
// miss. Another conversation is refused.
func TestMCPStdioExplain(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		spawn := func(session string) *mcpClient {
			cmd := exec.Command(binPath, "mcp", "--redis", e.url, "--prefix", e.prefix, "--agent", "kate", "--session-id", session)
			cmd.Env = cliEnv()
			return newMCPClient(t, &mcp.CommandTransport{Command: cmd})
		}
		a, b := spawn("conv-a"), spawn("conv-b")
		id := a.start("wait for the reply")
		a.call("taskflow_wait", map[string]any{"flow_id": id,
			"wait_condition": map[string]any{"kind": "external_event", "topic": "email.reply", "correlation_id": "msg-1"}}, false)
		if _, err := e.m.TryResumeExternal(context.Background(), mustParseID(t, id), agenttool.Topic("kate", "email.bounce"), "msg-1", nil); err != nil {
			t.Fatal(err)
		}
		x := a.call("taskflow_explain", map[string]any{"flow_id": id}, false)["explanation"].(map[string]any)
		text, _ := x["text"].(string)
		if x["flow_id"] != id || x["status"] != "waiting" || x["code"] != "waiting_event" || x["stuck"] != false ||
			!strings.Contains(text, `topic "email.reply" with correlation id "msg-1"`) || !strings.Contains(text, `near miss: topic "email.bounce"`) ||
			x["facts"].(map[string]any)["topic"] != "email.reply" || x["moves"] == "" {
			t.Fatalf("explain: %v", x)
		}
		if r := b.call("taskflow_explain", map[string]any{"flow_id": id}, true); !strings.Contains(r["error"].(string), "belongs to a different session") {
			t.Fatalf("the other conversation's explain: %v", r)
		}
	})
}

// Finding flows through the built binary: two conversations of one
// agent start flows with the same controller and attribute; list_mine's
// filters list each its own, paged with the cursor.
func TestMCPStdioFind(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		spawn := func(session string) *mcpClient {
			cmd := exec.Command(binPath, "mcp", "--redis", e.url, "--prefix", e.prefix, "--agent", "kate", "--session-id", session)
			cmd.Env = cliEnv()
			return newMCPClient(t, &mcp.CommandTransport{Command: cmd})
		}
		a, b := spawn("conv-a"), spawn("conv-b")
		start := func(c *mcpClient, controller, customer string) string {
			time.Sleep(2 * time.Millisecond) // list_mine orders by creation time, in ms
			res := c.call("taskflow_start", map[string]any{"controller_id": controller, "goal": "g", "attributes": map[string]any{"customer": customer}}, false)
			return res["flow"].(map[string]any)["id"].(string)
		}
		a1 := start(a, "kate/invoices", "acme")
		start(a, "kate/invoices", "globex")
		start(a, "kate/refunds", "acme")
		a4 := start(a, "kate/invoices", "acme")
		b1 := start(b, "kate/invoices", "acme")
		list := func(c *mcpClient, args map[string]any) ([]string, string) {
			res := c.call("taskflow_list_mine", args, false)
			var ids []string
			for _, f := range res["flows"].([]any) {
				fl := f.(map[string]any)
				if fl["attributes"].(map[string]any)["customer"] != "acme" {
					t.Fatalf("listed %v", fl)
				}
				ids = append(ids, fl["id"].(string))
			}
			next, _ := res["next_cursor"].(string)
			return ids, next
		}
		filter := map[string]any{"controller_id": "kate/invoices", "attribute": "customer=acme", "limit": 1}
		first, next := list(a, filter)
		if len(first) != 1 || first[0] != a4 || next == "" {
			t.Fatalf("first page %v, next %q", first, next)
		}
		filter["cursor"] = next
		second, _ := list(a, filter)
		if len(second) != 1 || second[0] != a1 {
			t.Fatalf("second page %v, want %s", second, a1)
		}
		if got, next := list(b, map[string]any{"controller_id": "kate/invoices", "attribute": "customer=acme"}); len(got) != 1 || got[0] != b1 || next != "" {
			t.Fatalf("the other conversation lists %v (next %q), want only %s", got, next, b1)
		}
	})
}

type headerTransport struct{ name, value string }

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.name, h.value)
	return http.DefaultTransport.RoundTrip(r)
}

func TestMCPBadUsage(t *testing.T) {
	runCLI(t, "mcp", "--tools", "some").wantCode(t, 2).wantOneLineError(t, "--tools")
	runCLI(t, "mcp", "--transport", "pigeon").wantCode(t, 2).wantOneLineError(t, "--transport")
	runCLI(t, "mcp", "extra").wantCode(t, 2)
}

func mustParseID(t *testing.T, s string) uuid.UUID {
	t.Helper()
	id, err := uuid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// A host that sends a line that is no JSON-RPC message gets an error
// reply, and the server carries on: garbage, an empty object, a wrong
// version, an object id, a batch, bad UTF-8, deep nesting and a frame
// over the size bound each get their error code, and a ping after each
// is still answered. The server exits 0 when the host closes stdin.
func TestMCPStdioMalformedLines(t *testing.T) {
	e := newTestEnv(t, "redis://"+miniredis.RunT(t).Addr()+"/0")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, "mcp", "--redis", e.url, "--prefix", e.prefix, "--agent", "kate")
	cmd.Env = cliEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	replies := bufio.NewReader(stdout)
	// exchange sends one line and returns the next reply.
	exchange := func(line []byte) map[string]any {
		t.Helper()
		if _, err := stdin.Write(append(line, '\n')); err != nil {
			t.Fatalf("writing %.60q: %v (stderr %s)", line, err, stderr.String())
		}
		out, err := replies.ReadBytes('\n')
		if err != nil {
			t.Fatalf("no reply to %.60q: %v (stderr %s)", line, err, stderr.String())
		}
		var reply map[string]any
		if err := json.Unmarshal(out, &reply); err != nil {
			t.Fatalf("reply %q: %v", out, err)
		}
		return reply
	}
	ping := 100
	alive := func(after string) {
		t.Helper()
		ping++
		reply := exchange(fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%d,"method":"ping"}`, ping))
		if reply["id"] != float64(ping) || reply["error"] != nil {
			t.Fatalf("after %s, ping got %v", after, reply)
		}
	}
	init := exchange([]byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
	if init["result"] == nil {
		t.Fatalf("initialize: %v", init)
	}
	if _, err := io.WriteString(stdin, `{"jsonrpc":"2.0","method":"notifications/initialized"}`+"\n"); err != nil {
		t.Fatal(err)
	}
	alive("initialize")
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	nested := `{"jsonrpc":"2.0","id":7,"method":"ping","params":{"a":` + strings.Repeat("[", 1000) + strings.Repeat("]", 1000) + `}}`
	huge := `{"jsonrpc":"2.0","id":8,"method":"ping","params":{"pad":"` + strings.Repeat("x", mcpserver.MaxFrameBytes) + `"}}`
	for _, c := range []struct {
		name, line string
		code       float64
		id         any
	}{
		{"garbage", "this is not json", -32700, nil},
		{"a truncated object", `{"jsonrpc":"2.0","id":3,"method":`, -32700, nil},
		{"bad UTF-8", "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\",\"params\":{\"x\":\"\xff\"}}", -32700, nil},
		{"deep nesting", deep, -32700, nil},
		{"nesting in params", nested, -32700, nil},
		{"an empty object", `{}`, -32600, nil},
		{"a wrong version", `{"jsonrpc":"1.0","id":5,"method":"ping"}`, -32600, float64(5)},
		{"no version", `{"id":6,"method":"ping"}`, -32600, float64(6)},
		{"an object id", `{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`, -32600, nil},
		{"a null id", `{"jsonrpc":"2.0","id":null,"method":"ping"}`, -32600, nil},
		{"a fractional id", `{"jsonrpc":"2.0","id":1.5,"method":"ping"}`, -32600, nil},
		{"a method that is no string", `{"jsonrpc":"2.0","id":9,"method":3}`, -32600, float64(9)},
		{"params that are a string", `{"jsonrpc":"2.0","id":10,"method":"ping","params":"x"}`, -32600, float64(10)},
		{"a response without result or error", `{"jsonrpc":"2.0","id":11}`, -32600, nil},
		{"a batch", `[{"jsonrpc":"2.0","id":12,"method":"ping"}]`, -32600, nil},
		{"an empty batch", `[]`, -32600, nil},
		{"a number", `42`, -32600, nil},
		{"a frame over the bound", huge, -32600, nil},
	} {
		reply := exchange([]byte(c.line))
		errObj, _ := reply["error"].(map[string]any)
		if errObj == nil || errObj["code"] != c.code || reply["id"] != c.id || reply["jsonrpc"] != "2.0" {
			t.Errorf("%s: reply %v, want error %v with id %v", c.name, reply, c.code, c.id)
		}
		alive(c.name)
	}
	// A blank line is skipped; a frame just under the bound is served.
	if _, err := io.WriteString(stdin, "\n\r\n"); err != nil {
		t.Fatal(err)
	}
	alive("blank lines")
	pad := mcpserver.MaxFrameBytes - len(`{"jsonrpc":"2.0","id":13,"method":"ping","params":{"_meta":{"pad":""}}}`)
	big := exchange([]byte(`{"jsonrpc":"2.0","id":13,"method":"ping","params":{"_meta":{"pad":"` + strings.Repeat("y", pad) + `"}}}`))
	if big["id"] != float64(13) || big["error"] != nil {
		t.Fatalf("a frame of exactly the bound: %v", big)
	}
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("taskflow mcp: %v\nstderr:\n%s", err, stderr.String())
	}
}

// TestMCPStdioSchedules: through the built binary, a conversation
// schedules its follow-ups; another conversation of the agent neither
// sees nor deletes them.
func TestMCPStdioSchedules(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		spawn := func(session string) *mcpClient {
			cmd := exec.Command(binPath, "mcp", "--redis", e.url, "--prefix", e.prefix, "--agent", "kate", "--session-id", session)
			cmd.Env = cliEnv()
			return newMCPClient(t, &mcp.CommandTransport{Command: cmd})
		}
		a, b := spawn("conv-a"), spawn("conv-b")
		res := a.call("taskflow_schedule", map[string]any{"name": "follow-up", "every_seconds": 3600, "controller_id": "kate/mcp", "goal": "follow up"}, false)
		if sc := res["schedule"].(map[string]any); sc["name"] != "follow-up" || sc["every_seconds"] != float64(3600) || sc["next_fire"] == "" {
			t.Fatalf("schedule: %v", res)
		}
		if r := a.call("taskflow_list_schedules", map[string]any{}, false); r["count"] != float64(1) {
			t.Fatalf("list_schedules: %v", r)
		}
		if r := b.call("taskflow_list_schedules", map[string]any{}, false); r["count"] != float64(0) {
			t.Fatalf("the other conversation lists %v", r)
		}
		raw, err := b.cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "taskflow_unschedule", Arguments: map[string]any{"name": "follow-up"}})
		if err != nil || raw.IsError || !strings.Contains(raw.Content[0].(*mcp.TextContent).Text, `"error":"not_found"`) {
			t.Fatalf("the other conversation's unschedule: %+v %v", raw, err)
		}
		all, _, err := e.m.ListSchedules(context.Background())
		if err != nil || len(all) != 1 || all[0].Flow.OwnerSessionKey != "agent:kate:session:conv-a" {
			t.Fatalf("stored schedules: %v %v", all, err)
		}
		if r := a.call("taskflow_unschedule", map[string]any{"name": "follow-up"}, false); r["deleted"] != true {
			t.Fatalf("unschedule: %v", r)
		}
		if all, _, _ := e.m.ListSchedules(context.Background()); len(all) != 0 {
			t.Fatalf("left %d schedules", len(all))
		}
	})
}
