package agenttool

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/internal/plainjson"
)

// Tool definitions for each LLM provider, all derived from one source: the
// plain JSON Schema of the combined tool (toolSchema in tool_schema.go) and the
// per-action table below. Each shape is what that provider documents and
// accepts as it is:
//
//   - OpenAI function calling (Chat Completions "tools" entries, and the
//     same function object in the Responses API): the name matches
//     ^[a-zA-Z0-9_-]{1,64}$, the description is at most 1,024 characters
//     (longer ones are refused with string_above_max_length), parameters
//     is a JSON Schema object without a top-level oneOf/anyOf/allOf/not.
//     Strict mode (platform.openai.com/docs/guides/function-calling,
//     "strict mode", and docs/guides/structured-outputs, "supported
//     schemas") also needs additionalProperties:false on every object and
//     every property listed in required (an optional one is made nullable
//     with a type array such as ["string","null"]); an object without
//     properties cannot be expressed, so the free-form state, patch and
//     final_state travel as state_json, patch_json and final_state_json:
//     strings holding a JSON object, which Tool.Call decodes. At most 5
//     levels of nesting and 100 properties (newer models allow more).
//   - Anthropic Messages API tools (docs.anthropic.com, "tool use"): name
//     ^[a-zA-Z0-9_-]{1,64}$, description, input_schema (a JSON Schema of
//     type object; the API refuses oneOf, allOf or anyOf at its top
//     level).
//   - Gemini function declarations (ai.google.dev/api/caching#Schema and
//     the Vertex AI FunctionDeclaration reference): the name starts with a
//     letter or an underscore and holds a-z, A-Z, 0-9, '_', '.', ':', '-'
//     up to 64 characters; parameters is the API's Schema object, a select
//     subset of OpenAPI 3.0: type (STRING, NUMBER, INTEGER, BOOLEAN, ARRAY,
//     OBJECT), format, description, nullable, enum (on STRING, with format
//     "enum"), properties, required, items and a few bounds; no
//     additionalProperties, and an OBJECT needs properties, so the
//     free-form objects travel as *_json strings here too.
//   - MCP tools/list entries (modelcontextprotocol.io specification,
//     server/tools): name (1 to 128 of A-Z a-z 0-9 _ - .), title,
//     description, inputSchema and outputSchema (JSON Schemas of type
//     object) and annotations (readOnlyHint, destructiveHint,
//     idempotentHint, openWorldHint).
//
// The combined tool names its per-action requirements in the property
// descriptions and enforces them in Call's error texts: a top-level
// combinator (if/then, oneOf) would be refused by OpenAI and Anthropic.
// The per-action tools carry them in the schema, as required lists, and
// their property descriptions drop the combined tool's "start: ..." leads
// and "Required by ..." tails (forAction).
//
// Every object with fixed properties says additionalProperties:false in
// every shape but Gemini's (whose Schema has no such keyword), and Call
// refuses an argument the action does not take whatever the shape: a
// misspelt argument is an error the model can correct, never a call that
// comes back ok having done nothing.

// Set selects the tools of a definition list.
type Set int

const (
	// Combined is the one tool "taskflow" that takes an "action".
	Combined Set = iota
	// PerAction is one tool per action, named "taskflow_<action>"
	// (taskflow_start, taskflow_status, ...), so a host can mark the
	// read-only and the destructive ones. Route their calls with
	// Tool.CallTool.
	PerAction
)

// NamePrefix starts the name of every per-action tool: the tool of
// action a is NamePrefix + a, e.g. "taskflow_start".
const NamePrefix = Name + "_"

// MaxDescription is the longest description any definition has: the
// OpenAI limit on function descriptions, the strictest of the providers.
const MaxDescription = 1024

// jsonStringSuffix names the string form of a free-form object argument
// in the strict OpenAI and the Gemini shapes: state_json carries state.
const jsonStringSuffix = "_json"

// freeFormArgs are the object arguments without fixed properties.
var freeFormArgs = []string{"state", "patch", "final_state", "attributes"}

// actionSpec describes the per-action tool of one action.
type actionSpec struct {
	action   string
	title    string
	summary  string   // what the tool does; {state} etc. name the arguments
	props    []string // its properties, in schema order
	required []string
	result   results // what its result holds
	// descs replaces a property's description in this tool, where the
	// combined tool's wording loses something once its lead is cut.
	descs map[string]string

	readOnly, destructive, idempotent bool // the MCP annotations
}

// results says what a tool's result may hold, for its output schema.
type results struct {
	flow        bool // {"flow":{...}}
	notFound    bool // {"ok":false,"error":"not_found","flow_id"}
	flows       bool // {"count","flows":[...]}
	children    bool // {"count","children":[...],"next_cursor"}
	explanation bool // {"explanation":{...}}
	schedule    bool // {"schedule":{...},"replaced"}
	schedules   bool // {"count","schedules":[...]}
	unschedule  bool // {"name","deleted"} or {"ok":false,"name","error":"not_found"}
	page        bool // list_mine's {"total","truncated","next_cursor"}
}

// The per-action tools. advance replaces state keys and finish, fail and
// cancel end a flow for good: those are destructive. A repeated wait,
// wait_children, finish, fail or cancel is refused and changes nothing,
// and a repeated spawn returns the children the first one made:
// idempotent.
var actionSpecs = []actionSpec{
	{action: ActionStart, title: "Start a flow",
		summary: `Create a durable flow for a long job and start it (status running). Needs controller_id and goal; optional current_step (default "init"), {state} (its initial JSON state, default {}), idempotency_key (a start repeated with the same key returns the same flow) and {attributes} (labels to find it by). Keep the returned flow id for the other calls.`,
		props:   []string{"controller_id", "goal", "current_step", "state", "idempotency_key", "attributes"}, required: []string{"controller_id", "goal"},
		descs: map[string]string{
			"current_step":  `A label for the flow's first phase (default "init").`,
			"controller_id": `A label for the kind of job, in your agent's namespace: "<agent id>/<name>", e.g. "kate/inbox-triage" (unless the host allows other ids; an error names what is allowed).`,
		},
		result: results{flow: true, notFound: true}},
	{action: ActionStatus, title: "Read a flow",
		summary: `Read a flow: its status, current step, JSON state and wait.`,
		props:   []string{"flow_id"}, required: []string{"flow_id"}, readOnly: true, idempotent: true, result: flowOrNotFound},
	{action: ActionAdvance, title: "Record progress",
		summary: `Record progress on a flow: {patch} (a JSON object shallow-merged into the state: the top-level keys it names are replaced, the others kept) and/or current_step.`,
		props:   []string{"flow_id", "patch", "current_step"}, required: []string{"flow_id"}, destructive: true, result: flowOrNotFound},
	{action: ActionWait, title: "Pause a flow",
		summary: `Pause a running flow until wait_condition is met; it resumes by itself. wait_condition is {"kind":"timer","at":"<RFC 3339 time in the future>"}, {"kind":"external_event","topic":"...","correlation_id":"..."} or {"kind":"manual"} (a human or operator resumes it).`,
		props:   []string{"flow_id", "wait_condition"}, required: []string{"flow_id", "wait_condition"}, idempotent: true, result: flowOrNotFound},
	{action: ActionFinish, title: "Finish a flow",
		summary: `Complete a running flow, optionally merging {final_state} (a JSON object) into its state. A finished flow cannot change any more.`,
		props:   []string{"flow_id", "final_state"}, required: []string{"flow_id"}, destructive: true, idempotent: true, result: flowOrNotFound},
	{action: ActionFail, title: "Fail a flow",
		summary: `Mark a running or waiting flow failed, with a reason. A failed flow cannot change any more.`,
		props:   []string{"flow_id", "reason"}, required: []string{"flow_id", "reason"}, destructive: true, idempotent: true, result: flowOrNotFound},
	{action: ActionCancel, title: "Cancel a flow",
		summary: `Cancel a flow that is not finished, failed or cancelled yet. A cancelled flow cannot change any more.`,
		props:   []string{"flow_id"}, required: []string{"flow_id"}, destructive: true, idempotent: true, result: flowOrNotFound},
	{action: ActionListMine, title: "List my flows",
		summary: `List this session's flows, newest created first, 100 a page (or limit); optional filters, combined: status, controller_id, attribute ("name=value", a search attribute given at start). "total" counts all your flows; "truncated" says more may follow: send next_cursor back as cursor (a page may hold fewer than limit).`,
		props:   []string{"status", "controller_id", "attribute", "cursor", "limit"}, readOnly: true, idempotent: true, result: results{flows: true, page: true},
		descs: map[string]string{"controller_id": `Only flows of this controller.`}},
	{action: ActionSpawn, title: "Start child flows",
		summary: `Split a job: start child flows under a flow of yours (flow_id), each {"key","controller_id","goal"} with optional current_step, {state} and on_parent_close (what the parent's end does to a child still open: cancel, request_cancel or abandon). The same key again returns the same child. Children are your flows too; wait for them with wait_children.`,
		props:   []string{"flow_id", "children"}, required: []string{"flow_id", "children"}, idempotent: true,
		result: results{flows: true, notFound: true}},
	{action: ActionWaitChildren, title: "Wait for child flows",
		summary: `Pause a running flow until its children are done; it resumes by itself with "children" in its state (total, finished, failed, cancelled, pending, why, results). need: how many must finish (default all; 1 = any); fail_fast: resume at the first failure; deadline (RFC 3339) or timeout_seconds: resume then in any case.`,
		props:   []string{"flow_id", "need", "fail_fast", "deadline", "timeout_seconds"}, required: []string{"flow_id"}, idempotent: true,
		result: flowOrNotFound},
	{action: ActionListChildren, title: "List child flows",
		summary: `Page a flow's children in start order: id, key, status, ended, and the state or error of those that ended. Send next_cursor back as cursor for the next page ("" after the last).`,
		props:   []string{"flow_id", "cursor", "limit"}, required: []string{"flow_id"}, readOnly: true, idempotent: true,
		result: results{children: true, notFound: true}},
	{action: ActionExplain, title: "Explain a flow",
		summary: `Say why a flow is where it is and what will move it on. "code" names the situation (ready, leased, lease_expired, waiting_timer, waiting_event, waiting_manual, waiting_children, cancel_pending, ended, ...); "stuck" is true when nothing in place will move it (no engine ticking, no worker for its controller); "text" and "moves" say it in plain words; "facts" holds the figures (times, seconds, counts). It changes nothing.`,
		props:   []string{"flow_id"}, required: []string{"flow_id"}, readOnly: true, idempotent: true,
		result: results{explanation: true, notFound: true}},
	{action: ActionSchedule, title: "Schedule a flow",
		summary:  `Start a flow of controller_id with goal on a calendar, as a follow-up that outlives this session: cron (in time_zone, default UTC) or every_seconds (at least 60). Optional current_step and {state}; each flow's state also gets "schedule" (name, fire time). Scheduling a name again replaces it (an operator's pause stays); at most 100 per session. A fire skips while the previous flow has not ended.`,
		props:    []string{"name", "cron", "every_seconds", "time_zone", "controller_id", "goal", "current_step", "state"},
		required: []string{"name", "controller_id", "goal"}, destructive: true, idempotent: true,
		descs: map[string]string{
			"controller_id": `A label for the kind of job, in your agent's namespace: "<agent id>/<name>", e.g. "kate/inbox-triage" (unless the host allows other ids; an error names what is allowed).`,
			"current_step":  `A label for each flow's first phase (default "init").`,
			"state":         `Each flow's initial JSON state (default {}).`,
		},
		result: results{schedule: true}},
	{action: ActionListSchedules, title: "List my schedules",
		summary:  `List this session's schedules: name, cron or every_seconds, controller_id, goal, next_fire, paused (by an operator), fired, skipped, last_flow_id.`,
		readOnly: true, idempotent: true, result: results{schedules: true}},
	{action: ActionUnschedule, title: "Delete a schedule",
		summary: `Delete a schedule of this session by name; the flows it started stay.`,
		props:   []string{"name"}, required: []string{"name"}, destructive: true, idempotent: true,
		result: results{unschedule: true}},
}

// flowOrNotFound is the result of an action on one flow.
var flowOrNotFound = results{flow: true, notFound: true}

// perActionTail ends every per-action description.
const perActionTail = ` Flows belong to the current session; you only see your own. Errors say what to fix.`

// combinedDescription is the combined tool's description; {state},
// {patch} and {final_state} name the free-form arguments of the shape.
const combinedDescription = `Durable flows for long jobs that outlive this conversation: goal, step, JSON state; pause until a time, event or human; split; schedule follow-ups. You see only this session's flows.

Set "action":
- start: needs controller_id, goal; optional current_step, {state}, {attributes}.
- status: read it.
- advance: {patch} (merged into state), current_step.
- wait: pause until wait_condition.
- finish: complete it, optional {final_state}.
- fail: needs reason.
- cancel: end it.
- list_mine: your flows, newest first; filters status, controller_id, attribute ("name=value"); cursor.
- spawn: start children (each: key, controller_id, goal); wait_children: pause until they end; list_children: page them.
- explain: why it is where it is.
- schedule: flows on cron or every_seconds (name, controller_id, goal).
- list_schedules, unschedule (name): yours.
Flow actions need flow_id.

created -> running (<-> waiting) -> finished|failed|cancelled (final). Unknown flow_id or name: {"ok":false,"error":"not_found"}.`

// describe fills the argument names of a description: the object names
// in the plain shapes, their *_json names in the string-carrying ones.
func describe(text string, jsonStrings bool) string {
	pairs := make([]string, 0, 2*len(freeFormArgs))
	for _, name := range freeFormArgs {
		v := name
		if jsonStrings {
			v = name + jsonStringSuffix
		}
		pairs = append(pairs, "{"+name+"}", v)
	}
	return strings.NewReplacer(pairs...).Replace(text)
}

// --- the source schema --------------------------------------------------

// srcProp is one property of the source schema.
type srcProp struct {
	name        string
	typ         string
	description string
	enum        []string
	props       []srcProp // an object's properties, in order
	required    []string
	items       *srcProp // an array's items
}

// freeForm reports whether the property is an object without properties.
func (p srcProp) freeForm() bool { return p.typ == "object" && len(p.props) == 0 }

// sourceSchema parses toolSchema, keeping the order of the properties.
func sourceSchema() (props []srcProp, required []string) {
	root, err := parseSrcProp("", json.RawMessage(toolSchema))
	if err != nil {
		panic("taskflow: the tool schema does not parse: " + err.Error()) // a constant (tested)
	}
	return root.props, root.required
}

func parseSrcProp(name string, raw json.RawMessage) (srcProp, error) {
	var s struct {
		Type        string                     `json:"type"`
		Description string                     `json:"description"`
		Enum        []string                   `json:"enum"`
		Properties  map[string]json.RawMessage `json:"properties"`
		Required    []string                   `json:"required"`
		Items       json.RawMessage            `json:"items"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return srcProp{}, err
	}
	p := srcProp{name: name, typ: s.Type, description: s.Description, enum: s.Enum, required: s.Required}
	if len(s.Items) > 0 {
		items, err := parseSrcProp("", s.Items)
		if err != nil {
			return srcProp{}, err
		}
		p.items = &items
	}
	if len(s.Properties) > 0 {
		var probe struct {
			Properties json.RawMessage `json:"properties"`
		}
		_ = json.Unmarshal(raw, &probe)
		order, err := objectKeys(probe.Properties)
		if err != nil {
			return srcProp{}, err
		}
		for _, k := range order {
			c, err := parseSrcProp(k, s.Properties[k])
			if err != nil {
				return srcProp{}, err
			}
			p.props = append(p.props, c)
		}
	}
	return p, nil
}

// objectKeys returns the keys of a JSON object in document order.
func objectKeys(raw json.RawMessage) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object")
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// --- ordered JSON --------------------------------------------------------

// jsonObject is a JSON object that keeps its keys in order.
type jsonObject []jsonField

type jsonField struct {
	key   string
	value any
}

func (o jsonObject) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, err := plainjson.Marshal(f.key)
		if err != nil {
			return nil, err
		}
		v, err := plainjson.Marshal(f.value)
		if err != nil {
			return nil, err
		}
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

func mustJSON(v any) json.RawMessage {
	b, err := plainjson.Marshal(v)
	if err != nil {
		panic("taskflow: marshalling a tool schema: " + err.Error()) // built from constants (tested)
	}
	return b
}

// --- the shapes ----------------------------------------------------------

// schemaDialect is how one provider writes a schema.
type schemaDialect int

const (
	dialectPlain  schemaDialect = iota // JSON Schema: OpenAI, Anthropic, MCP
	dialectStrict                      // OpenAI strict mode
	dialectGemini                      // Gemini's OpenAPI 3.0 subset
)

func (d schemaDialect) jsonStrings() bool { return d != dialectPlain }

// objectSchema writes an object schema of props with required names.
func objectSchema(d schemaDialect, props []srcProp, required []string, nullable bool) jsonObject {
	isRequired := func(name string) bool {
		for _, r := range required {
			if r == name {
				return true
			}
		}
		return false
	}
	properties := jsonObject{}
	var req []string
	for _, p := range props {
		name := p.name
		if d.jsonStrings() && p.freeForm() {
			name += jsonStringSuffix
		}
		properties = append(properties, jsonField{name, propSchema(d, p, !isRequired(p.name))})
		if d == dialectStrict || isRequired(p.name) {
			req = append(req, name) // strict mode lists every property
		}
	}
	o := jsonObject{{"type", typeName(d, "object", nullable && d == dialectStrict)}}
	if nullable && d == dialectGemini {
		o = append(o, jsonField{"nullable", true})
	}
	o = append(o, jsonField{"properties", properties})
	if len(req) > 0 || d == dialectStrict {
		if req == nil {
			req = []string{}
		}
		o = append(o, jsonField{"required", req})
	}
	if d != dialectGemini { // Gemini's Schema has no such keyword
		o = append(o, jsonField{"additionalProperties", false})
	}
	return o
}

// propSchema writes one property; optional says it may be left out
// (strict mode: sent as null).
func propSchema(d schemaDialect, p srcProp, optional bool) jsonObject {
	if p.typ == "object" && !p.freeForm() {
		o := objectSchema(d, p.props, p.required, optional && d == dialectStrict)
		return append(o[:1:1], append(jsonObject{{"description", p.description}}, o[1:]...)...)
	}
	if p.typ == "array" && p.items != nil {
		items := propSchema(d, *p.items, false)
		return jsonObject{{"type", typeName(d, "array", optional && d == dialectStrict)}, {"description", p.description}, {"items", items}}
	}
	typ, desc := p.typ, p.description
	if p.freeForm() && d.jsonStrings() {
		typ = "string"
		desc += ` Send it as a string holding the JSON object, e.g. "{\"key\":\"value\"}".`
	}
	nullable := optional && d == dialectStrict
	o := jsonObject{{"type", typeName(d, typ, nullable)}}
	if d == dialectGemini && len(p.enum) > 0 {
		o = append(o, jsonField{"format", "enum"})
	}
	o = append(o, jsonField{"description", desc})
	if len(p.enum) > 0 {
		var enum any = p.enum
		if nullable { // a nullable enum must list null (strict mode)
			e := make([]any, 0, len(p.enum)+1)
			for _, v := range p.enum {
				e = append(e, v)
			}
			enum = append(e, nil)
		}
		o = append(o, jsonField{"enum", enum})
	}
	return o
}

// typeName writes a type in the dialect: Gemini's upper-case names, a
// ["t","null"] pair for a nullable strict-mode property.
func typeName(d schemaDialect, typ string, nullable bool) any {
	switch {
	case d == dialectGemini:
		return strings.ToUpper(typ)
	case nullable:
		return []string{typ, "null"}
	}
	return typ
}

// toolShape is one tool in a neutral form, before a provider's wrapping.
type toolShape struct {
	name, title, description string
	parameters               json.RawMessage
	spec                     *actionSpec // nil for the combined tool
}

// shapes builds the tools of set in dialect d.
func shapes(set Set, d schemaDialect) []toolShape {
	props, required := sourceSchema()
	if set == PerAction {
		byName := make(map[string]srcProp, len(props))
		for _, p := range props {
			byName[p.name] = p
		}
		out := make([]toolShape, 0, len(actionSpecs))
		for i := range actionSpecs {
			a := &actionSpecs[i]
			ps := make([]srcProp, 0, len(a.props))
			for _, name := range a.props {
				ps = append(ps, forAction(a, byName[name]))
			}
			out = append(out, toolShape{
				name:        NamePrefix + a.action,
				title:       a.title,
				description: describe(a.summary, d.jsonStrings()) + perActionTail,
				parameters:  mustJSON(objectSchema(d, ps, a.required, false)),
				spec:        a,
			})
		}
		return out
	}
	return []toolShape{{
		name:        Name,
		title:       "Durable flows",
		description: describe(combinedDescription, d.jsonStrings()),
		parameters:  mustJSON(objectSchema(d, props, required, false)),
	}}
}

// requiredByTail and actionLead are the parts of a combined tool's
// property description that name actions: " Required by status, advance
// and wait." and "start (default \"init\") and advance: ".
var (
	requiredByTail = regexp.MustCompile(` Required by [a-z_, ]+\.$`)
	actionLead     = regexp.MustCompile(`^[a-z_]+(?: \([^)]*\))?(?: and [a-z_]+)?: `)
)

// forAction words a property of the combined tool for the tool of one
// action: the action's own description when it has one, else the
// combined one without the leads and tails that name actions.
func forAction(a *actionSpec, p srcProp) srcProp {
	if d, ok := a.descs[p.name]; ok {
		p.description = d
		return p
	}
	d := requiredByTail.ReplaceAllString(p.description, "")
	if lead := actionLead.FindString(d); lead != "" {
		d = strings.TrimPrefix(d, lead)
		r, size := utf8.DecodeRuneInString(d)
		d = string(unicode.ToUpper(r)) + d[size:]
	}
	p.description = d
	return p
}

// OpenAIDefinition is a tool in the shape of OpenAI's Chat Completions "tools"
// array: {"type":"function","function":{...}}. The Responses API takes
// the function's fields flat, next to "type":"function".
type OpenAIDefinition struct {
	// Type is "function".
	Type     string         `json:"type"`
	Function OpenAIFunction `json:"function"`
}

// OpenAIFunction is an OpenAI function definition.
type OpenAIFunction struct {
	Name string `json:"name"`
	// Description is at most MaxDescription characters.
	Description string `json:"description"`
	// Parameters is the JSON Schema of the arguments (type object).
	Parameters json.RawMessage `json:"parameters"`
	// Strict is true for the strict-mode definitions.
	Strict bool `json:"strict,omitempty"`
}

// OpenAIDefinitions returns the tools of set for OpenAI function calling. With
// strict, the definitions satisfy strict mode ("strict":true): every
// object has additionalProperties:false and lists all its properties as
// required, the optional ones nullable (send null to leave one out); the
// free-form state, patch and final_state are sent as state_json,
// patch_json and final_state_json, strings holding a JSON object, which
// Call and CallTool decode.
func OpenAIDefinitions(set Set, strict bool) []OpenAIDefinition {
	d := dialectPlain
	if strict {
		d = dialectStrict
	}
	var out []OpenAIDefinition
	for _, s := range shapes(set, d) {
		out = append(out, OpenAIDefinition{Type: "function", Function: OpenAIFunction{
			Name: s.name, Description: s.description, Parameters: s.parameters, Strict: strict,
		}})
	}
	return out
}

// AnthropicDefinition is a tool in the shape of Anthropic's Messages API.
type AnthropicDefinition struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	InputSchema json.RawMessage `json:"input_schema"`
}

// AnthropicDefinitions returns the tools of set for Anthropic's Messages API.
func AnthropicDefinitions(set Set) []AnthropicDefinition {
	var out []AnthropicDefinition
	for _, s := range shapes(set, dialectPlain) {
		out = append(out, AnthropicDefinition{Name: s.name, Description: s.description, InputSchema: s.parameters})
	}
	return out
}

// GeminiDefinition is one entry of a Gemini tool's
// functionDeclarations. Parameters is in the API's Schema form (OpenAPI
// 3.0 subset, upper-case types); the free-form state, patch and
// final_state are sent as state_json, patch_json and final_state_json,
// strings holding a JSON object, which Call and CallTool decode.
type GeminiDefinition struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Parameters is nil for a tool without arguments (list_mine): Gemini
	// refuses an OBJECT without properties.
	Parameters json.RawMessage `json:"parameters,omitempty"`
}

// GeminiDefinitions returns the tools of set as Gemini function
// declarations.
func GeminiDefinitions(set Set) []GeminiDefinition {
	var out []GeminiDefinition
	for _, s := range shapes(set, dialectGemini) {
		d := GeminiDefinition{Name: s.name, Description: s.description, Parameters: s.parameters}
		if s.spec != nil && len(s.spec.props) == 0 {
			d.Parameters = nil
		}
		out = append(out, d)
	}
	return out
}

// MCPDefinition is a tool as an MCP server lists it (tools/list).
type MCPDefinition struct {
	Name        string `json:"name"`
	Title       string `json:"title,omitempty"`
	Description string `json:"description"`
	// InputSchema is the JSON Schema of the arguments (type object).
	InputSchema json.RawMessage `json:"inputSchema"`
	// OutputSchema is the JSON Schema of the result, which a server sends
	// as structuredContent (type object).
	OutputSchema json.RawMessage `json:"outputSchema"`
	Annotations  MCPAnnotations  `json:"annotations"`
}

// MCPAnnotations are an MCP tool's behaviour hints.
type MCPAnnotations struct {
	Title string `json:"title,omitempty"`
	// ReadOnlyHint: the tool changes nothing (status, list_mine,
	// list_children, explain).
	ReadOnlyHint bool `json:"readOnlyHint"`
	// DestructiveHint: the tool may overwrite or end something (advance
	// replaces state keys; finish, fail and cancel end a flow for good).
	DestructiveHint bool `json:"destructiveHint"`
	// IdempotentHint: repeating the call with the same arguments has no
	// further effect.
	IdempotentHint bool `json:"idempotentHint"`
	// OpenWorldHint is false: the tools touch only the flow space.
	OpenWorldHint bool `json:"openWorldHint"`
}

// MCPDefinitions returns the tools of set as an MCP server lists them, with
// annotations and output schemas. The combined tool is marked
// destructive, as some of its actions are.
func MCPDefinitions(set Set) []MCPDefinition {
	var out []MCPDefinition
	for _, s := range shapes(set, dialectPlain) {
		t := MCPDefinition{Name: s.name, Title: s.title, Description: s.description, InputSchema: s.parameters}
		switch {
		case s.spec == nil:
			t.OutputSchema = mustJSON(outputSchema(results{flow: true, notFound: true, flows: true, children: true, explanation: true,
				page: true, schedule: true, schedules: true, unschedule: true}))
			t.Annotations = MCPAnnotations{Title: s.title, DestructiveHint: true}
		default:
			t.OutputSchema = mustJSON(outputSchema(s.spec.result))
			t.Annotations = MCPAnnotations{Title: s.title, ReadOnlyHint: s.spec.readOnly,
				DestructiveHint: s.spec.destructive, IdempotentHint: s.spec.idempotent}
		}
		out = append(out, t)
	}
	return out
}

// flowOutputSchema is the schema of a flow in a result.
func flowOutputSchema() jsonObject {
	str := func(desc string) jsonObject { return jsonObject{{"type", "string"}, {"description", desc}} }
	all := taskflow.Statuses()
	statuses := make([]string, 0, len(all))
	for _, s := range all {
		statuses = append(statuses, string(s))
	}
	props := jsonObject{
		{"id", str("The flow's id (a UUID).")},
		{"controller_id", str("The kind of job.")},
		{"goal", str("What the flow is meant to achieve.")},
		{"current_step", str("The flow's current phase.")},
		{"status", jsonObject{{"type", "string"}, {"enum", statuses}, {"description", "finished, failed and cancelled are final."}}},
		{"cancel_requested", jsonObject{{"type", "boolean"}, {"description", "A cancel was requested: only cancel is accepted now."}}},
		{"state", jsonObject{{"type", "object"}, {"description", "The flow's JSON state."}}},
		{"wait", jsonObject{{"type", []string{"object", "null"}}, {"description", "What a waiting flow waits for, else null."}}},
		{"revision", jsonObject{{"type", "integer"}, {"description", "Bumped by every change."}}},
		{"created_at", str("RFC 3339 time.")},
		{"updated_at", str("RFC 3339 time.")},
	}
	required := make([]string, 0, len(props))
	for _, p := range props {
		required = append(required, p.key)
	}
	props = append(props, // a child's and a parent's, when set
		jsonField{"parent_id", str("A child's parent flow.")},
		jsonField{"child_key", str("A child's key among its parent's children.")},
		jsonField{"children", jsonObject{{"type", "integer"}, {"description", "How many children the flow started."}}},
		jsonField{"attributes", jsonObject{{"type", "object"}, {"description", "The flow's search attributes, name to value."}, {"additionalProperties", jsonObject{{"type", "string"}}}}})
	return jsonObject{{"type", "object"}, {"properties", props}, {"required", required}}
}

// childOutputSchema is the schema of a child in list_children's result.
func childOutputSchema() jsonObject {
	str := func(desc string) jsonObject { return jsonObject{{"type", "string"}, {"description", desc}} }
	return jsonObject{{"type", "object"}, {"properties", jsonObject{
		{"id", str("The child's flow id.")},
		{"key", str("The child's key.")},
		{"status", str("Its outcome once ended, else its status now; empty for a child that is gone.")},
		{"ended", jsonObject{{"type", "boolean"}, {"description", "The child has ended and its parent has its outcome."}}},
		{"state", jsonObject{{"type", "object"}, {"description", "An ended child's final state (when at most 4 KiB)."}}},
		{"state_omitted", jsonObject{{"type", "boolean"}, {"description", "The final state was too large to keep here."}}},
		{"error", str("A failed child's reason.")},
	}}, {"required", []string{"id", "key", "status", "ended"}}}
}

// explanationOutputSchema is the schema of explain's explanation, a
// taskflow.Explanation. Its code takes no enum: a later version may name
// a new situation.
func explanationOutputSchema() jsonObject {
	str := func(desc string) jsonObject { return jsonObject{{"type", "string"}, {"description", desc}} }
	var statuses []string
	for _, s := range taskflow.Statuses() {
		statuses = append(statuses, string(s))
	}
	return jsonObject{{"type", "object"}, {"properties", jsonObject{
		{"flow_id", str("The flow's id.")},
		{"status", jsonObject{{"type", "string"}, {"enum", statuses}, {"description", "The flow's status."}}},
		{"code", str("The situation: created, ready, gated (waiting for its turn or a limit of its concurrency keys), gate_pending, admitted, leased, lease_expired, waiting_timer, waiting_event, waiting_manual, waiting_children, waiting, cancel_pending or ended.")},
		{"stuck", jsonObject{{"type", "boolean"}, {"description", "Nothing in place will move the flow (no engine ticking, no worker for its controller, a wait nothing ends)."}}},
		{"text", str("Where the flow is and why, in plain words.")},
		{"moves", str("What will move it on, in plain words.")},
		{"facts", jsonObject{{"type", "object"}, {"description", "The figures behind the words: times in RFC 3339, durations in seconds (\"_s\"), counts; which ones depends on code."}}},
	}}, {"required", []string{"flow_id", "status", "code", "stuck", "text", "moves"}}}
}

// scheduleOutputSchema is the schema of a schedule in a result
// (toolSchedule).
func scheduleOutputSchema() jsonObject {
	str := func(desc string) jsonObject { return jsonObject{{"type", "string"}, {"description", desc}} }
	integer := func(desc string) jsonObject { return jsonObject{{"type", "integer"}, {"description", desc}} }
	return jsonObject{{"type", "object"}, {"properties", jsonObject{
		{"name", str("Your name for it.")},
		{"cron", str("Its cron expression, when it has one.")},
		{"every_seconds", integer("Its interval, when it has one.")},
		{"time_zone", str("The zone cron is read in.")},
		{"controller_id", str("The kind of job each fire starts.")},
		{"goal", str("Each flow's goal.")},
		{"next_fire", str("The next fire, RFC 3339; empty when paused or done.")},
		{"paused", jsonObject{{"type", "boolean"}, {"description", "An operator paused it."}}},
		{"fired", integer("Fires that started a flow.")},
		{"skipped", integer("Fires skipped (the previous flow had not ended, or missed while down).")},
		{"last_flow_id", str("The flow of the last fire.")},
	}}, {"required", []string{"name", "controller_id", "goal", "next_fire", "paused", "fired", "skipped"}}}
}

// outputSchema is the schema of a result holding r: {"ok":true,
// "flow":{...}}, the not_found answer, {"ok":true,"count":N,
// "flows":[...]}, {"ok":true,"count":N,"children":[...],
// "next_cursor":"..."}, {"ok":true,"explanation":{...}}, list_mine's
// page ("total", "truncated", "next_cursor") and the schedule actions'
// results. No additionalProperties:false: a later version may add a
// field.
func outputSchema(r results) jsonObject {
	props := jsonObject{{"ok", jsonObject{{"type", "boolean"}, {"description", "false only for an unknown flow_id or schedule name."}}}}
	if r.flow {
		props = append(props, jsonField{"flow", flowOutputSchema()})
	}
	if r.notFound {
		props = append(props,
			jsonField{"error", jsonObject{{"type", "string"}, {"enum", []string{"not_found"}}}},
			jsonField{"flow_id", jsonObject{{"type", "string"}, {"description", "The unknown flow_id."}}})
	}
	if r.flows || r.children {
		props = append(props, jsonField{"count", jsonObject{{"type", "integer"}}})
	}
	if r.flows {
		props = append(props, jsonField{"flows", jsonObject{{"type", "array"}, {"items", flowOutputSchema()}}})
	}
	if r.children {
		props = append(props,
			jsonField{"children", jsonObject{{"type", "array"}, {"items", childOutputSchema()}}},
			jsonField{"next_cursor", jsonObject{{"type", "string"}, {"description", "The cursor of the next page; empty after the last."}}})
	}
	if r.explanation {
		props = append(props, jsonField{"explanation", explanationOutputSchema()})
	}
	if r.page {
		props = append(props,
			jsonField{"total", jsonObject{{"type", "integer"}, {"description", "How many flows the session has, whatever the filters."}}},
			jsonField{"truncated", jsonObject{{"type", "boolean"}, {"description", "More flows may follow: send next_cursor back as cursor."}}})
		if !r.children {
			props = append(props, jsonField{"next_cursor", jsonObject{{"type", "string"}, {"description", "The cursor of the next page; left out after the last."}}})
		}
	}
	if r.schedule {
		props = append(props, jsonField{"schedule", scheduleOutputSchema()},
			jsonField{"replaced", jsonObject{{"type", "boolean"}, {"description", "The name was in use: that schedule was replaced."}}})
	}
	if r.schedules {
		if !r.flows && !r.children {
			props = append(props, jsonField{"count", jsonObject{{"type", "integer"}}})
		}
		props = append(props, jsonField{"schedules", jsonObject{{"type", "array"}, {"items", scheduleOutputSchema()}}})
	}
	if r.unschedule {
		props = append(props, jsonField{"name", jsonObject{{"type", "string"}, {"description", "The schedule's name."}}},
			jsonField{"deleted", jsonObject{{"type", "boolean"}}})
		if !r.notFound {
			props = append(props, jsonField{"error", jsonObject{{"type", "string"}, {"enum", []string{"not_found"}}}})
		}
	}
	return jsonObject{{"type", "object"}, {"properties", props}, {"required", []string{"ok"}}}
}

// Names returns the names of the tools of set, in definition order.
func Names(set Set) []string {
	if set == PerAction {
		names := make([]string, 0, len(actionSpecs))
		for _, a := range actionSpecs {
			names = append(names, NamePrefix+a.action)
		}
		return names
	}
	return []string{Name}
}

// Action returns the action of the tool named name: "" for the
// combined tool "taskflow", the action for a per-action tool, and false
// for a name that is neither.
func Action(name string) (action string, ok bool) {
	if name == Name {
		return "", true
	}
	if a, found := strings.CutPrefix(name, NamePrefix); found {
		for _, known := range Actions() {
			if a == known {
				return a, true
			}
		}
	}
	return "", false
}

// CallTool runs a call of the tool named name, as a host routes a model's
// call: "taskflow" is Call; a per-action tool ("taskflow_start", ...) is
// Call with its action set. Arguments of the per-action tools may leave
// out "action"; one naming another action is refused. Any shape's
// arguments are accepted, including the strict and Gemini forms (nulls,
// state_json, ...). An unknown name is an error wrapping ErrArgs.
func (t *Tool) CallTool(ctx context.Context, s Session, name string, args json.RawMessage) (json.RawMessage, error) {
	action, ok := Action(name)
	if !ok {
		return nil, argErr("unknown tool %q; the tools are %s and %s", name, Name, strings.Join(Names(PerAction), ", "))
	}
	if action == "" {
		return t.Call(ctx, s, args)
	}
	trimmed := bytes.TrimSpace(args)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		trimmed = []byte(`{}`)
	}
	var m map[string]json.RawMessage
	if trimmed[0] != '{' || json.Unmarshal(trimmed, &m) != nil {
		return nil, argErr("the arguments of %s must be a JSON object", name)
	}
	if raw, ok := m["action"]; ok && string(raw) != "null" {
		var got string
		if json.Unmarshal(raw, &got) != nil || strings.TrimSpace(got) != action {
			return nil, argErr("%s runs the action %q; leave \"action\" out or use the tool of that action", name, action)
		}
	}
	m["action"] = mustJSON(action)
	b, err := plainjson.Marshal(m)
	if err != nil {
		return nil, argErr("the arguments of %s: %v", name, err)
	}
	return t.Call(ctx, s, b)
}

// normalizeArgs turns the string-carrying and nullable forms of the
// strict and Gemini shapes into the plain one: a null argument is left
// out, and state_json, patch_json and final_state_json (strings holding a
// JSON object) become state, patch and final_state. Plain arguments come
// back unchanged, byte for byte.
func normalizeArgs(args json.RawMessage) (json.RawMessage, error) {
	if !bytes.Contains(args, []byte(jsonStringSuffix)) && !bytes.Contains(args, []byte("null")) {
		return args, nil
	}
	if !utf8.Valid(args) {
		if bytes.Contains(args, []byte(jsonStringSuffix+`"`)) {
			return nil, argErr("the arguments are not valid UTF-8")
		}
		return args, nil // decoding would replace the bad bytes: the store refuses them as they are
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(args, &m); err != nil {
		return args, nil // Call reports it
	}
	changed, err := decodeJSONStrings(m, "", freeFormArgs)
	if err != nil {
		return nil, err
	}
	if raw, ok := m["children"]; ok && (bytes.Contains(raw, []byte(jsonStringSuffix)) || bytes.Contains(raw, []byte("null"))) {
		var items []map[string]json.RawMessage
		if json.Unmarshal(raw, &items) == nil { // else spawn reports it
			itemsChanged := false
			for i, item := range items {
				c, err := decodeJSONStrings(item, "children["+strconv.Itoa(i)+"].", []string{"state", "attributes"})
				if err != nil {
					return nil, err
				}
				itemsChanged = itemsChanged || c
			}
			if itemsChanged {
				m["children"] = mustJSON(items)
				changed = true
			}
		}
	}
	if raw, ok := m["wait_condition"]; ok && bytes.Contains(raw, []byte("null")) {
		var w map[string]json.RawMessage
		if json.Unmarshal(raw, &w) == nil {
			for k, v := range w {
				if string(bytes.TrimSpace(v)) == "null" {
					delete(w, k)
				}
			}
			m["wait_condition"] = mustJSON(w)
			changed = true
		}
	}
	if !changed {
		return args, nil
	}
	return plainjson.Marshal(m)
}

// decodeJSONStrings drops the null members of the object m and turns
// its name_json strings (for each of names) into the JSON objects they
// hold; at prefixes the names in error texts. It reports whether it
// changed m.
func decodeJSONStrings(m map[string]json.RawMessage, at string, names []string) (changed bool, err error) {
	for k, v := range m {
		if string(bytes.TrimSpace(v)) == "null" {
			delete(m, k)
			changed = true
		}
	}
	for _, name := range names {
		raw, ok := m[name+jsonStringSuffix]
		if !ok {
			continue
		}
		changed = true
		delete(m, name+jsonStringSuffix)
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			return false, argErr("%q must be a string holding a JSON object, e.g. \"{\\\"key\\\":\\\"value\\\"}\"", at+name+jsonStringSuffix)
		}
		obj := bytes.TrimSpace([]byte(text))
		if !json.Valid(obj) || len(obj) == 0 || obj[0] != '{' {
			return false, argErr("%q must hold a JSON object such as {\"key\":\"value\"}, got %q", at+name+jsonStringSuffix, text)
		}
		if _, both := m[name]; both {
			return false, argErr("send either %q or %q, not both", at+name, at+name+jsonStringSuffix)
		}
		m[name] = obj
	}
	return changed, nil
}

// parseFlowID reads a flow id in any form the original takes: hyphenated
// (123e4567-e89b-12d3-a456-426614174000), braced ({...}), URN
// (urn:uuid:...) or the 32 hex digits alone.
func parseFlowID(s string) (uuid.UUID, error) {
	switch {
	case len(s) == 38 && (s[0] != '{' || s[37] != '}'):
		return uuid.Nil, fmt.Errorf("not a braced UUID") // uuid.Parse would take any two outer bytes
	case len(s) == 45 && !strings.EqualFold(s[:9], "urn:uuid:"):
		return uuid.Nil, fmt.Errorf("not a UUID URN")
	}
	return uuid.Parse(s)
}

// actionSpecOf returns the spec of an action, nil for an unknown one.
func actionSpecOf(action string) *actionSpec {
	for i := range actionSpecs {
		if actionSpecs[i].action == action {
			return &actionSpecs[i]
		}
	}
	return nil
}
