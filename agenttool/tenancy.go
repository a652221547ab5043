package agenttool

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/internal/plainjson"
)

// Topic returns the topic under which the tool stores an
// external_event wait that a session of agent agentID sets on topic:
// "agent:<agent id>:<topic>", the agent id trimmed of surrounding white
// space. Every wait set through the tool is scoped this way, so events
// reach only the waits of the agent they are meant for: a session of
// another agent that names the same topic and correlation id waits under
// its own agent's topic and is never resumed by them, nor reads their
// payload.
//
// A host resumes its agents' waits by publishing to the scoped topic:
//
//	m.ResumeByCorrelation(ctx, agenttool.Topic("kate", "email.reply"), msgID, payload)
//	m.PublishResume(ctx, taskflow.ResumeRequest{Topic: agenttool.Topic("kate", "email.reply"), CorrelationID: msgID})
//
// Sessions of one agent share its topics. The model sees and sends its
// topics unscoped. Topics starting with "agent:" are the tool's: a host
// should not give its own waits such topics.
func Topic(agentID, topic string) string {
	return "agent:" + strings.TrimSpace(agentID) + ":" + topic
}

// scopeWait puts an external_event wait of session s under its agent's
// topic.
func scopeWait(s Session, w taskflow.WaitCondition) taskflow.WaitCondition {
	if w.Kind == taskflow.WaitKindExternalEvent {
		w.Topic = Topic(s.AgentID, w.Topic)
	}
	return w
}

// unscopeWait shows a stored wait as the model set it: the topic without
// the scope of the flow owner's agent. Anything else is returned as is.
func unscopeWait(owner string, wait json.RawMessage) json.RawMessage {
	rest, ok := strings.CutPrefix(owner, "agent:")
	if !ok || len(wait) == 0 {
		return wait
	}
	agent, _, ok := strings.Cut(rest, ":")
	if !ok {
		return wait
	}
	w, err := taskflow.ParseWaitCondition(wait)
	if err != nil || w.Kind != taskflow.WaitKindExternalEvent {
		return wait
	}
	topic, ok := strings.CutPrefix(w.Topic, Topic(agent, ""))
	if !ok || topic == "" {
		return wait
	}
	w.Topic = topic
	b, err := plainjson.Marshal(w)
	if err != nil {
		return wait
	}
	return b
}

// WithAllowedControllers lets the tool's sessions start flows for exactly
// these controller ids (trimmed of white space), instead of the default:
// each agent's own namespace, "<agent id>/<name>". For a host that runs
// one tool per tenant, or whose tenants share controllers on purpose.
// Called with no id, no session may start a flow. See
// WithControllerPolicy for a rule per session.
func WithAllowedControllers(ids ...string) Option {
	allowed := map[string]bool{}
	var list []string
	for _, id := range ids {
		if id = strings.TrimSpace(id); id != "" && !allowed[id] {
			allowed[id] = true
			list = append(list, fmt.Sprintf("%q", id))
		}
	}
	return func(c *config) {
		c.controllers = func(_ Session, id string) error {
			if allowed[id] {
				return nil
			}
			if len(list) == 0 {
				return argErr("this host lets no session start flows")
			}
			return argErr("controller_id %q is not allowed; use one of %s", id, strings.Join(list, ", "))
		}
	}
}

// WithControllerPolicy sets the rule that decides which controller ids a
// session may start flows for: allow(s, id) returns true to allow. The
// default allows an agent's own namespace only ("<agent id>/<name>"; an
// agent id holding '/' has none),
// so one tenant cannot put work on another's ready queues, where the
// other's workers would claim it. A nil allow keeps the default.
func WithControllerPolicy(allow func(s Session, controllerID string) bool) Option {
	return func(c *config) {
		if allow == nil {
			return
		}
		c.controllers = func(s Session, id string) error {
			if allow(s, id) {
				return nil
			}
			return argErr("controller_id %q is not allowed for this session", id)
		}
	}
}

// ownNamespace is the default controller rule: "<agent id>/<name>". An
// agent id holding '/' has no namespace of its own ("kate/x/" is inside
// "kate/"), so such a session may start nothing under this rule.
func ownNamespace(s Session, id string) error {
	agent := strings.TrimSpace(s.AgentID)
	if strings.Contains(agent, "/") {
		return argErr("the agent id %q contains '/', so it has no controller namespace of its own; the host must allow controllers with WithAllowedControllers or WithControllerPolicy", agent)
	}
	ns := agent + "/"
	if strings.HasPrefix(id, ns) && len(id) > len(ns) {
		return nil
	}
	return argErr("controller_id %q is outside this agent's namespace: it must start with %q, e.g. %q", id, ns, ns+"inbox-triage")
}
