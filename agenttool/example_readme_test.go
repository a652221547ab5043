package agenttool_test

// The README's snippet on the agent tool, the whole body of an example
// here, so the tests compile it as it reads (TestReadmeGoSnippets in the
// root package checks the README against it). The names it takes from
// its surroundings are the package-level variables below. It is
// compiled, not run.

import (
	"context"
	"encoding/json"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/agenttool"
)

var (
	ctx      = context.Background()
	m        *taskflow.Manager
	argsJSON json.RawMessage
)

func offerToModel(agenttool.Definition)   {}
func replyToModel(json.RawMessage, error) {}

func Example_readmeTool() {
	tool := agenttool.New(m) // WithTimerMaxHorizon(30 * 24 * time.Hour)
	def := tool.Definition() // Name, Description, Parameters (JSON Schema)
	offerToModel(def)        // hand def to your LLM provider's tool list; when the model calls it:
	out, err := tool.Call(ctx, agenttool.Session{AgentID: "kate", SessionID: "chat-42"}, argsJSON)
	// err: the arguments need fixing (errors.Is ErrArgs) or the flow is another
	//      session's (ErrForbidden) — send err.Error() back to the model as the tool result
	// out: {"ok":true,"flow":{...}} or {"ok":false,"error":"not_found","flow_id":...}
	replyToModel(out, err)
}
