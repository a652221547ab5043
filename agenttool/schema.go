package agenttool

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/internal/plainjson"
)

// What the agent tool shows a model: its definition and JSON Schema,
// and the shapes of its results.

// Definition is the combined tool as LLM providers describe it: a
// name, a description for the model, and a JSON Schema of the arguments.
// It marshals to {"name","description","parameters"}: the function object
// of OpenAI's function calling (non-strict) and a Gemini function
// declaration's field names. For each provider's own shape use
// OpenAIDefinitions (plain or strict), AnthropicDefinitions (input_schema),
// GeminiDefinitions and MCPDefinitions (inputSchema, outputSchema,
// annotations); they also offer one tool per action (PerAction).
type Definition struct {
	// Name is "taskflow".
	Name string `json:"name"`
	// Description tells the model what the tool does and how to call it;
	// at most MaxDescription characters.
	Description string `json:"description"`
	// Parameters is a plain JSON Schema of type object: no $ref, no
	// top-level oneOf.
	Parameters json.RawMessage `json:"parameters"`
}

// toolSchema is the JSON Schema of the arguments.
const toolSchema = `{
  "type": "object",
  "properties": {
    "action": {
      "type": "string",
      "enum": ["start", "status", "advance", "wait", "finish", "fail", "cancel", "list_mine", "spawn", "wait_children", "list_children", "explain", "schedule", "list_schedules", "unschedule"],
      "description": "What to do."
    },
    "flow_id": {
      "type": "string",
      "description": "The flow's id (a UUID, as returned by start or list_mine). Required by status, advance, wait, finish, fail, cancel, spawn, wait_children, list_children and explain."
    },
    "controller_id": {
      "type": "string",
      "description": "start and schedule: a label for the kind of job, in your agent's namespace: \"<agent id>/<name>\", e.g. \"kate/inbox-triage\" (unless the host allows other ids; an error names what is allowed); list_mine: only flows of this controller. Required by start and schedule."
    },
    "goal": {
      "type": "string",
      "description": "start and schedule: what the flow is meant to achieve, in plain words. Required by start and schedule."
    },
    "current_step": {
      "type": "string",
      "description": "start (default \"init\") and advance: a label for the flow's current phase."
    },
    "state": {
      "type": "object",
      "description": "start and schedule: the flow's initial JSON state (default {})."
    },
    "idempotency_key": {
      "type": "string",
      "description": "start (optional): a key for this job of your choosing, e.g. the id of the message that asked for it (at most 256 bytes). A start repeated with the same key in this session returns the flow the first one made instead of starting a second."
    },
    "attributes": {
      "type": "object",
      "description": "start: search attributes to find the flow by later with list_mine's attribute filter, name to string value, e.g. {\"customer\":\"acme\"}: at most 8, a name 1 to 64 of a-z 0-9 _ . -, a value 1 to 256 bytes (write a number as a string)."
    },
    "status": {
      "type": "string",
      "enum": ["created", "running", "waiting", "finished", "failed", "cancelled"],
      "description": "list_mine: only flows in this status."
    },
    "attribute": {
      "type": "string",
      "description": "list_mine: only flows whose search attribute has this value, as \"name=value\", e.g. \"customer=acme\"."
    },
    "patch": {
      "type": "object",
      "description": "advance: keys to set in the flow's state; top-level keys named here replace the old values, the others are kept."
    },
    "wait_condition": {
      "type": "object",
      "description": "wait: what the flow waits for. Required by wait.",
      "properties": {
        "kind": {
          "type": "string",
          "enum": ["timer", "external_event", "manual"],
          "description": "timer: resume at a time; external_event: resume when an event with this topic and correlation_id arrives; manual: a human or operator resumes it."
        },
        "at": {
          "type": "string",
          "description": "timer: when to resume, an RFC 3339 time such as \"2030-01-02T15:04:05Z\"; it must be in the future and at most the maximum horizon (default 30 days) ahead."
        },
        "topic": {
          "type": "string",
          "description": "external_event: the event's topic (non-empty). Topics are private to your agent: only events published for your agent resume the flow."
        },
        "correlation_id": {
          "type": "string",
          "description": "external_event: the id that ties the event to this flow (non-empty)."
        }
      },
      "required": ["kind"]
    },
    "final_state": {
      "type": "object",
      "description": "finish: keys to merge into the state as the flow finishes (optional)."
    },
    "reason": {
      "type": "string",
      "description": "fail: why the flow failed. Required by fail."
    },
    "children": {
      "type": "array",
      "description": "spawn: the child flows to start under flow_id (1 to 100 a call). Required by spawn.",
      "items": {
        "type": "object",
        "description": "One child flow. It belongs to this session, like the flows you start.",
        "properties": {
          "key": {
            "type": "string",
            "description": "The child's name among the flow's children, e.g. \"chapter-3\" (at most 256 bytes). Spawning the same key again returns the child the first spawn made."
          },
          "controller_id": {
            "type": "string",
            "description": "The child's kind of job, in your agent's namespace as for start."
          },
          "goal": {
            "type": "string",
            "description": "What the child is meant to achieve."
          },
          "current_step": {
            "type": "string",
            "description": "A label for the child's first phase (default \"init\")."
          },
          "state": {
            "type": "object",
            "description": "The child's initial JSON state (default {})."
          },
          "attributes": {
            "type": "object",
            "description": "The child's search attributes, as for start."
          },
          "on_parent_close": {
            "type": "string",
            "enum": ["cancel", "request_cancel", "abandon"],
            "description": "What the parent's end does to the child if it has not ended: cancel it (default), request its cancel, or abandon it (it runs on)."
          }
        },
        "required": ["key", "controller_id", "goal"]
      }
    },
    "need": {
      "type": "integer",
      "description": "wait_children: resume once this many children finished; 0 or left out means all of them, 1 means any."
    },
    "fail_fast": {
      "type": "boolean",
      "description": "wait_children: resume as soon as a child failed or was cancelled."
    },
    "deadline": {
      "type": "string",
      "description": "wait_children: resume at this RFC 3339 time even if the children are not done; in the future and at most the maximum horizon (default 30 days) ahead. Or send timeout_seconds."
    },
    "timeout_seconds": {
      "type": "integer",
      "description": "wait_children: resume after this many seconds even if the children are not done (instead of deadline)."
    },
    "cursor": {
      "type": "string",
      "description": "list_children and list_mine: the next_cursor of the page before (with the same filters); leave it out for the first page."
    },
    "limit": {
      "type": "integer",
      "description": "list_children and list_mine: how many a page holds at most, 1 to 100 (default 100)."
    },
    "name": {
      "type": "string",
      "description": "schedule and unschedule: your name for the schedule, e.g. \"daily-digest\" (letters, digits, '.', '_', '-'; at most 100). Scheduling a name again replaces that schedule. Required by schedule and unschedule."
    },
    "cron": {
      "type": "string",
      "description": "schedule: when to start a flow, a cron expression \"min hour dom month dow\" such as \"0 8 * * MON-FRI\", or @hourly, @daily, @weekly, @monthly. Or send every_seconds."
    },
    "every_seconds": {
      "type": "integer",
      "description": "schedule: start a flow every this many seconds (at least 60), instead of cron."
    },
    "time_zone": {
      "type": "string",
      "description": "schedule: the IANA time zone cron is read in, e.g. \"Europe/Madrid\" (default UTC)."
    }
  },
  "required": ["action"]
}`

// Definition returns the tool's definition for an LLM provider: the name
// "taskflow", a description and the JSON Schema of the arguments.
func (t *Tool) Definition() Definition {
	s := shapes(Combined, dialectPlain)[0]
	return Definition{Name: s.name, Description: s.description, Parameters: s.parameters}
}

// toolArgs are the arguments the model sends. Unknown fields (a revision,
// say) are ignored.
type toolArgs struct {
	Action        string          `json:"action"`
	FlowID        string          `json:"flow_id"`
	ControllerID  string          `json:"controller_id"`
	Goal          string          `json:"goal"`
	CurrentStep   string          `json:"current_step"`
	State         json.RawMessage `json:"state"`
	Patch         json.RawMessage `json:"patch"`
	WaitCondition json.RawMessage `json:"wait_condition"`
	FinalState    json.RawMessage `json:"final_state"`
	Reason        string          `json:"reason"`
	// IdempotencyKey makes start idempotent per session.
	IdempotencyKey string `json:"idempotency_key"`
	// Children are spawn's children (childArgs each, checked in
	// children.go).
	Children json.RawMessage `json:"children"`
	// Need, FailFast, Deadline and TimeoutSeconds are wait_children's join.
	Need           *int   `json:"need"`
	FailFast       bool   `json:"fail_fast"`
	Deadline       string `json:"deadline"`
	TimeoutSeconds *int64 `json:"timeout_seconds"`
	// Cursor and Limit page list_children and list_mine.
	Cursor string `json:"cursor"`
	Limit  *int   `json:"limit"`
	// Name, Cron, EverySeconds and TimeZone are schedule's and
	// unschedule's (schedules.go).
	Name         string `json:"name"`
	Cron         string `json:"cron"`
	EverySeconds *int64 `json:"every_seconds"`
	TimeZone     string `json:"time_zone"`
	// Attributes are start's search attributes (a JSON object of
	// strings, checked by attributesArg).
	Attributes json.RawMessage `json:"attributes"`
	// Status, ControllerID and Attribute ("name=value") filter list_mine.
	Status    string `json:"status"`
	Attribute string `json:"attribute"`
}

// toolFlow is a flow as the model sees it.
type toolFlow struct {
	ID              string              `json:"id"`
	ControllerID    string              `json:"controller_id"`
	Goal            string              `json:"goal"`
	CurrentStep     string              `json:"current_step"`
	Status          taskflow.FlowStatus `json:"status"`
	CancelRequested bool                `json:"cancel_requested"`
	State           json.RawMessage     `json:"state"`
	Wait            json.RawMessage     `json:"wait"`
	Revision        int64               `json:"revision"`
	CreatedAt       string              `json:"created_at"`
	UpdatedAt       string              `json:"updated_at"`
	// ParentID and ChildKey name a child's parent and its key there;
	// Children counts the children a flow started. Left out when empty.
	ParentID string `json:"parent_id,omitempty"`
	ChildKey string `json:"child_key,omitempty"`
	Children int    `json:"children,omitempty"`
	// Attributes are the flow's search attributes; left out when none.
	Attributes map[string]string `json:"attributes,omitempty"`
}

func newToolFlow(f *taskflow.Flow) toolFlow {
	state := f.State
	if len(bytes.TrimSpace(state)) == 0 {
		state = json.RawMessage(`{}`)
	}
	var wait json.RawMessage
	if len(bytes.TrimSpace(f.Wait)) > 0 {
		wait = unscopeWait(f.OwnerSessionKey, f.Wait)
	}
	parent := ""
	if f.ParentID != uuid.Nil {
		parent = f.ParentID.String()
	}
	return toolFlow{
		ID:              f.ID.String(),
		ControllerID:    f.ControllerID,
		Goal:            f.Goal,
		CurrentStep:     f.CurrentStep,
		Status:          f.Status,
		CancelRequested: f.CancelRequested,
		State:           state,
		Wait:            wait,
		Revision:        f.Revision,
		CreatedAt:       f.CreatedAt.UTC().Format(time.RFC3339Nano),
		UpdatedAt:       f.UpdatedAt.UTC().Format(time.RFC3339Nano),
		ParentID:        parent,
		ChildKey:        f.ChildKey,
		Children:        f.Children,
		Attributes:      f.Attributes,
	}
}

type flowResult struct {
	OK   bool     `json:"ok"`
	Flow toolFlow `json:"flow"`
}

type listResult struct {
	OK    bool `json:"ok"`
	Count int  `json:"count"`
	// Total is how many flows the session has, whatever the filters;
	// Truncated says that more flows may follow Flows: NextCursor, sent
	// back as "cursor", lists them (it is left out after the last page).
	Total      int        `json:"total"`
	Truncated  bool       `json:"truncated"`
	Flows      []toolFlow `json:"flows"`
	NextCursor string     `json:"next_cursor,omitempty"`
}

// childrenResult is list_children's page.
type childrenResult struct {
	OK       bool        `json:"ok"`
	Count    int         `json:"count"`
	Children []toolChild `json:"children"`
	// NextCursor is the cursor of the next page, "" after the last.
	NextCursor string `json:"next_cursor"`
}

// toolChild is a child as list_children shows it.
type toolChild struct {
	ID           string              `json:"id"`
	Key          string              `json:"key"`
	Status       taskflow.FlowStatus `json:"status"`
	Ended        bool                `json:"ended"`
	State        json.RawMessage     `json:"state,omitempty"`
	StateOmitted bool                `json:"state_omitted,omitempty"`
	Error        string              `json:"error,omitempty"`
}

type notFoundResult struct {
	OK     bool   `json:"ok"`
	Error  string `json:"error"`
	FlowID string `json:"flow_id"`
}

// encodeResult marshals a result without HTML escaping, so the state comes
// back with its bytes.
func encodeResult(v any) (json.RawMessage, error) {
	b, err := plainjson.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("taskflow tool: encoding the result: %w", err)
	}
	return b, nil
}
