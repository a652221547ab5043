package providers

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/alicebob/miniredis/v2"
	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	anthropicoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	openaioption "github.com/openai/openai-go/v3/option"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/agenttool"
)

// The SDKs talk to a fake provider that checks what the SDK sent (our
// definitions, then our tool's result) and answers as the provider does:
// first with a call of taskflow_start in the shape's argument form, then
// with text. The flow must then exist, owned by the session.

var session = agenttool.Session{AgentID: "kate", SessionID: "chat-1"}

func newTool(t *testing.T) (*agenttool.Tool, *taskflow.Manager) {
	t.Helper()
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = client.Close() })
	store, err := taskflow.NewRedisStore(client)
	if err != nil {
		t.Fatal(err)
	}
	m := taskflow.NewManager(store)
	return agenttool.New(m), m
}

// fakeProvider answers round 1 with first and later rounds with final,
// recording each request body.
type fakeProvider struct {
	mu     sync.Mutex
	bodies []map[string]any
	first  string
	final  string
}

func (f *fakeProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	data, _ := io.ReadAll(r.Body)
	var body map[string]any
	if err := json.Unmarshal(data, &body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.bodies = append(f.bodies, body)
	n := len(f.bodies)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if n == 1 {
		_, _ = io.WriteString(w, f.first)
		return
	}
	_, _ = io.WriteString(w, f.final)
}

// checkFlow checks the session owns one flow with state {"n":1}.
func checkFlow(t *testing.T, m *taskflow.Manager) {
	t.Helper()
	flows, err := m.ListByOwner(context.Background(), session.OwnerKey())
	if err != nil || len(flows) != 1 {
		t.Fatalf("flows of the session: %v %v", flows, err)
	}
	if f := flows[0]; f.Status != taskflow.StatusRunning || string(f.State) != `{"n":1}` {
		t.Fatalf("flow %+v state %s", f, f.State)
	}
}

// toolNames returns the names of the tools in a request body, found at
// path (e.g. "function.name").
func toolNames(tools []any, get func(map[string]any) string) []string {
	var names []string
	for _, tl := range tools {
		names = append(names, get(tl.(map[string]any)))
	}
	return names
}

func TestOpenAI(t *testing.T) {
	tool, m := newTool(t)
	args, _ := json.Marshal(`{"controller_id":"kate/c","goal":"g","current_step":null,"state_json":"{\"n\":1}"}`)
	fp := &fakeProvider{
		first: `{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"finish_reason":"tool_calls",
			"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"taskflow_start","arguments":` + string(args) + `}}]}}]}`,
		final: `{"id":"c2","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"finish_reason":"stop",
			"message":{"role":"assistant","content":"Started."}}]}`,
	}
	srv := httptest.NewServer(fp)
	defer srv.Close()
	client := openai.NewClient(openaioption.WithAPIKey("test"), openaioption.WithBaseURL(srv.URL+"/v1/"), openaioption.WithMaxRetries(0))
	text, err := RunOpenAI(context.Background(), client, "gpt-test", tool, session, "start a flow")
	if err != nil || text != "Started." {
		t.Fatalf("RunOpenAI = %q, %v", text, err)
	}
	checkFlow(t, m)
	tools := fp.bodies[0]["tools"].([]any)
	names := toolNames(tools, func(m map[string]any) string { return m["function"].(map[string]any)["name"].(string) })
	if strings.Join(names, ",") != strings.Join(agenttool.Names(agenttool.PerAction), ",") {
		t.Fatalf("tools sent: %v", names)
	}
	if fn := tools[0].(map[string]any)["function"].(map[string]any); fn["strict"] != true {
		t.Fatalf("not strict: %v", fn)
	}
	msgs := fp.bodies[1]["messages"].([]any)
	last := msgs[len(msgs)-1].(map[string]any)
	if last["role"] != "tool" || last["tool_call_id"] != "call_1" || !strings.Contains(last["content"].(string), `"ok":true`) {
		t.Fatalf("tool result sent: %v", last)
	}
}

func TestAnthropic(t *testing.T) {
	tool, m := newTool(t)
	fp := &fakeProvider{
		first: `{"id":"msg_1","type":"message","role":"assistant","model":"m","stop_reason":"tool_use",
			"content":[{"type":"tool_use","id":"tu_1","name":"taskflow_start","input":{"controller_id":"kate/c","goal":"g","state":{"n":1}}}],
			"usage":{"input_tokens":1,"output_tokens":1}}`,
		final: `{"id":"msg_2","type":"message","role":"assistant","model":"m","stop_reason":"end_turn",
			"content":[{"type":"text","text":"Started."}],"usage":{"input_tokens":1,"output_tokens":1}}`,
	}
	srv := httptest.NewServer(fp)
	defer srv.Close()
	client := anthropic.NewClient(anthropicoption.WithAPIKey("test"), anthropicoption.WithBaseURL(srv.URL), anthropicoption.WithMaxRetries(0))
	text, err := RunAnthropic(context.Background(), client, "claude-test", tool, session, "start a flow")
	if err != nil || text != "Started." {
		t.Fatalf("RunAnthropic = %q, %v", text, err)
	}
	checkFlow(t, m)
	tools := fp.bodies[0]["tools"].([]any)
	names := toolNames(tools, func(m map[string]any) string { return m["name"].(string) })
	if len(names) != len(agenttool.Actions()) || names[0] != "taskflow_start" {
		t.Fatalf("tools sent: %v", names)
	}
	schema := tools[0].(map[string]any)["input_schema"].(map[string]any)
	if schema["type"] != "object" || len(schema["required"].([]any)) != 2 {
		t.Fatalf("input_schema sent: %v", schema)
	}
	msgs := fp.bodies[1]["messages"].([]any)
	last := msgs[len(msgs)-1].(map[string]any)
	block := last["content"].([]any)[0].(map[string]any)
	if last["role"] != "user" || block["type"] != "tool_result" || block["tool_use_id"] != "tu_1" {
		t.Fatalf("tool result sent: %v", last)
	}
}

func TestGemini(t *testing.T) {
	tool, m := newTool(t)
	fp := &fakeProvider{
		first: `{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"taskflow_start",
			"args":{"controller_id":"kate/c","goal":"g","state_json":"{\"n\":1}"}}}]}}]}`,
		final: `{"candidates":[{"content":{"role":"model","parts":[{"text":"Started."}]}}]}`,
	}
	srv := httptest.NewServer(fp)
	defer srv.Close()
	text, err := RunGemini(context.Background(), srv.Client(), srv.URL+"/v1beta/models/gemini-test:generateContent", "test", tool, session, "start a flow")
	if err != nil || text != "Started." {
		t.Fatalf("RunGemini = %q, %v", text, err)
	}
	checkFlow(t, m)
	decls := fp.bodies[0]["tools"].([]any)[0].(map[string]any)["functionDeclarations"].([]any)
	if len(decls) != len(agenttool.Actions()) {
		t.Fatalf("declarations sent: %v", decls)
	}
	contents := fp.bodies[1]["contents"].([]any)
	last := contents[len(contents)-1].(map[string]any)
	part := last["parts"].([]any)[0].(map[string]any)["functionResponse"].(map[string]any)
	if part["name"] != "taskflow_start" || part["response"].(map[string]any)["ok"] != true {
		t.Fatalf("function response sent: %v", last)
	}
}

// A refused call reaches the model as text it can act on.
func TestToolErrorsReachTheModel(t *testing.T) {
	tool, _ := newTool(t)
	out, err := tool.CallTool(context.Background(), session, "taskflow_start", json.RawMessage(`{"controller_id":"kate/c"}`))
	if got := toolResult(out, err); !strings.Contains(got, "goal cannot be empty") {
		t.Fatalf("the model reads %q", got)
	}
}
