package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/mcp"

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
		if err != nil || len(tools.Tools) != 8 {
			t.Fatalf("tools: %v %v", tools, err)
		}
		id := a.start("stdio")
		uri := mcpserver.ResourcePrefix + id
		if err := a.cs.Subscribe(context.Background(), &mcp.SubscribeParams{URI: uri}); err != nil {
			t.Fatal(err)
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
