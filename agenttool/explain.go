package agenttool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/taskflow-dev/taskflow"
)

// explainResult is explain's result.
type explainResult struct {
	OK          bool                  `json:"ok"`
	Explanation *taskflow.Explanation `json:"explanation"`
}

// explain says why a flow of the session is where it is and what will
// move it (Manager.Explain). Like every action naming a flow it first
// checks that the flow is the session's; it changes nothing.
func (t *Tool) explain(ctx context.Context, s Session, a toolArgs) (json.RawMessage, error) {
	id, err := flowIDArg(ActionExplain, a.FlowID)
	if err != nil {
		return nil, err
	}
	f, err := t.ownFlow(ctx, s, ActionExplain, id)
	if f == nil || err != nil {
		return notFoundOr(id, err)
	}
	x, err := t.m.Explain(ctx, id)
	if err != nil {
		if errors.Is(err, taskflow.ErrNotFound) { // pruned meanwhile
			return notFound(id)
		}
		return nil, fmt.Errorf("taskflow tool: explain failed: %w", err)
	}
	return encodeResult(explainResult{OK: true, Explanation: forModel(s, x)})
}

// forModel shows an explanation as the model sees its flows: the topics
// of its agent's scope (Topic) as the model set them, in the facts and
// the words, as status shows its wait; and without the lease token, the
// proof a worker acts under, which the model never holds.
func forModel(s Session, x *taskflow.Explanation) *taskflow.Explanation {
	delete(x.Facts, "lease_token")
	scope := Topic(s.AgentID, "")
	if topic, ok := x.Facts["topic"].(string); ok {
		if rest, cut := strings.CutPrefix(topic, scope); cut && rest != "" {
			x.Facts["topic"] = rest
		}
	}
	// The words quote a topic after "topic " (%q): drop the scope there.
	// A quote inside a quoted value is escaped, so this never matches
	// within a correlation id.
	q := strconv.Quote(scope)
	unscope := strings.NewReplacer(`topic `+q[:len(q)-1], `topic "`).Replace
	x.Text, x.Moves = unscope(x.Text), unscope(x.Moves)
	if near, ok := x.Facts["near_miss"].(string); ok {
		x.Facts["near_miss"] = unscope(near)
	}
	if len(x.Facts) == 0 {
		x.Facts = nil
	}
	return x
}
