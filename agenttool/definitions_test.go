package agenttool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The providers' documented constraints on a tool definition (see the
// comment at the top of tool_definitions.go for the sources).
var (
	// OpenAI and Anthropic: ^[a-zA-Z0-9_-]{1,64}$.
	openAIName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	// Gemini: starts with a letter or '_'; a-z A-Z 0-9 _ . : -; at most 64.
	geminiName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$`)
	// Gemini parameter names: a letter or '_', then a-z A-Z 0-9 _, at most 64.
	geminiParam = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]{0,63}$`)
	// MCP: 1 to 128 of A-Z a-z 0-9 _ - .
	mcpName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
)

// Keywords each dialect may use; anything else in a schema is a defect.
var (
	// The plain JSON Schema subset we use (OpenAI non-strict, Anthropic,
	// MCP): a host that forwards an MCP schema to another provider gets
	// nothing exotic.
	plainKeywords = []string{"type", "description", "enum", "properties", "required", "items", "additionalProperties", "format"}
	// OpenAI strict mode's supported keywords that we use (strings:
	// pattern/format; numbers: bounds; objects: properties, required,
	// additionalProperties; arrays: items; anyOf, enum, const, $defs):
	// the subset of them we emit.
	strictKeywords = []string{"type", "description", "enum", "properties", "required", "additionalProperties", "items"}
	// Gemini's Schema object fields.
	geminiKeywords = []string{"type", "format", "description", "nullable", "enum", "maxItems", "minItems",
		"properties", "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern",
		"example", "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum", "title"}
	geminiTypes = []string{"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT"}
	jsonTypes   = []string{"string", "number", "integer", "boolean", "array", "object", "null"}
)

// schemaCheck collects the violations of one schema.
type schemaCheck struct {
	dialect    schemaDialect
	problems   []string
	properties int
}

func (c *schemaCheck) fail(path, format string, a ...any) {
	c.problems = append(c.problems, path+": "+fmt.Sprintf(format, a...))
}

// walk checks a schema node and its children.
func (c *schemaCheck) walk(path string, node map[string]any, depth int) {
	allowed := plainKeywords
	switch c.dialect {
	case dialectStrict:
		allowed = strictKeywords
	case dialectGemini:
		allowed = geminiKeywords
	}
	for k := range node {
		if !slices.Contains(allowed, k) {
			c.fail(path, "keyword %q is not allowed", k)
		}
	}
	if d, ok := node["description"].(string); !ok || d == "" {
		c.fail(path, "no description")
	}
	types := typesOf(node["type"])
	if len(types) == 0 {
		c.fail(path, "no type")
	}
	for _, t := range types {
		valid := jsonTypes
		if c.dialect == dialectGemini {
			valid = geminiTypes
		}
		if !slices.Contains(valid, t) {
			c.fail(path, "type %q is not a type of this dialect", t)
		}
	}
	if c.dialect != dialectStrict && len(types) > 1 {
		c.fail(path, "a type list %v", types)
	}
	if enum, ok := node["enum"].([]any); ok {
		if c.dialect == dialectGemini && (types[0] != "STRING" || node["format"] != "enum") {
			c.fail(path, "Gemini takes enum on a STRING with format enum")
		}
		if slices.Contains(types, "null") && !slices.Contains(enum, any(nil)) {
			c.fail(path, "a nullable enum must list null")
		}
	}
	isObject := slices.Contains(types, "object") || slices.Contains(types, "OBJECT")
	props, hasProps := node["properties"].(map[string]any)
	if slices.Contains(types, "array") || slices.Contains(types, "ARRAY") {
		items, ok := node["items"].(map[string]any)
		if !ok {
			c.fail(path, "an array without items")
			return
		}
		c.walk(path+"[]", items, depth+1)
		return
	}
	if !isObject {
		if hasProps || node["required"] != nil {
			c.fail(path, "properties on a non-object")
		}
		return
	}
	if depth > 5 {
		c.fail(path, "nested deeper than 5 levels")
	}
	required := stringsOf(node["required"])
	for _, r := range required {
		if _, ok := props[r]; !ok {
			c.fail(path, "required %q is not a property", r)
		}
	}
	switch c.dialect {
	case dialectStrict:
		if !hasProps {
			c.fail(path, "an object without properties cannot be expressed in strict mode")
		}
		if node["additionalProperties"] != false {
			c.fail(path, "strict mode needs additionalProperties:false")
		}
		keys := make([]string, 0, len(props))
		for k := range props {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		sorted := slices.Clone(required)
		sort.Strings(sorted)
		if node["required"] == nil || !reflect.DeepEqual(keys, sorted) && !(len(keys) == 0 && len(sorted) == 0) {
			c.fail(path, "strict mode needs every property required: properties %v, required %v", keys, required)
		}
	case dialectGemini:
		if !hasProps || len(props) == 0 {
			c.fail(path, "Gemini refuses an OBJECT without properties")
		}
		for k := range props {
			if !geminiParam.MatchString(k) {
				c.fail(path, "parameter name %q", k)
			}
		}
	}
	for k, v := range props {
		c.properties++
		child, ok := v.(map[string]any)
		if !ok {
			c.fail(path+"."+k, "not a schema")
			continue
		}
		c.walk(path+"."+k, child, depth+1)
	}
}

func typesOf(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case []any:
		return stringsOf(t)
	}
	return nil
}

func stringsOf(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// checkParameters checks a tool's argument schema in dialect d and
// returns its problems.
func checkParameters(d schemaDialect, raw json.RawMessage) []string {
	var root map[string]any
	if err := json.Unmarshal(raw, &root); err != nil {
		return []string{"parameters: " + err.Error()}
	}
	c := &schemaCheck{dialect: d}
	for _, k := range []string{"oneOf", "anyOf", "allOf", "not", "$ref", "enum"} {
		if _, ok := root[k]; ok {
			c.fail("parameters", "top-level %q is refused by OpenAI and Anthropic", k)
		}
	}
	want := "object"
	if d == dialectGemini {
		want = "OBJECT"
	}
	if root["type"] != want {
		c.fail("parameters", "type %v, want %s", root["type"], want)
	}
	// The root has no description of its own.
	root["description"] = "root"
	c.walk("parameters", root, 1)
	if c.properties > 100 {
		c.fail("parameters", "%d properties, OpenAI strict mode allows 100", c.properties)
	}
	return c.problems
}

func checkDescription(name, desc string) []string {
	var p []string
	if n := utf8.RuneCountInString(desc); n == 0 || n > MaxDescription {
		p = append(p, fmt.Sprintf("%s: description of %d characters, want 1..%d", name, n, MaxDescription))
	}
	return p
}

func TestDefinitionsOpenAI(t *testing.T) {
	for _, strict := range []bool{false, true} {
		for _, set := range []Set{Combined, PerAction} {
			d := dialectPlain
			if strict {
				d = dialectStrict
			}
			tools := OpenAIDefinitions(set, strict)
			if len(tools) != len(Names(set)) {
				t.Fatalf("%d tools, want %d", len(tools), len(Names(set)))
			}
			for _, tl := range tools {
				f := tl.Function
				var problems []string
				if tl.Type != "function" || f.Strict != strict {
					problems = append(problems, fmt.Sprintf("type %q strict %v", tl.Type, f.Strict))
				}
				if !openAIName.MatchString(f.Name) {
					problems = append(problems, "name "+f.Name)
				}
				problems = append(problems, checkDescription(f.Name, f.Description)...)
				problems = append(problems, checkParameters(d, f.Parameters)...)
				if len(problems) > 0 {
					t.Errorf("OpenAI strict=%v %s:\n  %s", strict, f.Name, strings.Join(problems, "\n  "))
				}
			}
			// The wire shape: {"type":"function","function":{name,description,parameters[,strict]}}.
			raw := mustJSON(tools[0])
			var wire struct {
				Type     string                     `json:"type"`
				Function map[string]json.RawMessage `json:"function"`
			}
			if err := json.Unmarshal(raw, &wire); err != nil || wire.Type != "function" {
				t.Fatalf("wire shape %s: %v", raw, err)
			}
			want := []string{"description", "name", "parameters"}
			if strict {
				want = append(want, "strict")
			}
			if got := sortedKeys(wire.Function); !reflect.DeepEqual(got, want) {
				t.Fatalf("function keys %v, want %v", got, want)
			}
		}
	}
}

func TestDefinitionsAnthropic(t *testing.T) {
	for _, set := range []Set{Combined, PerAction} {
		for _, tl := range AnthropicDefinitions(set) {
			var problems []string
			if !openAIName.MatchString(tl.Name) {
				problems = append(problems, "name "+tl.Name)
			}
			problems = append(problems, checkDescription(tl.Name, tl.Description)...)
			problems = append(problems, checkParameters(dialectPlain, tl.InputSchema)...)
			if len(problems) > 0 {
				t.Errorf("Anthropic %s:\n  %s", tl.Name, strings.Join(problems, "\n  "))
			}
			var wire map[string]json.RawMessage
			_ = json.Unmarshal(mustJSON(tl), &wire)
			if got := sortedKeys(wire); !reflect.DeepEqual(got, []string{"description", "input_schema", "name"}) {
				t.Fatalf("keys %v", got)
			}
		}
	}
}

func TestDefinitionsGemini(t *testing.T) {
	for _, set := range []Set{Combined, PerAction} {
		for _, fd := range GeminiDefinitions(set) {
			var problems []string
			if !geminiName.MatchString(fd.Name) {
				problems = append(problems, "name "+fd.Name)
			}
			problems = append(problems, checkDescription(fd.Name, fd.Description)...)
			if fd.Parameters != nil {
				problems = append(problems, checkParameters(dialectGemini, fd.Parameters)...)
			} else if fd.Name != NamePrefix+ActionListMine && fd.Name != NamePrefix+ActionListSchedules {
				problems = append(problems, "no parameters")
			}
			if len(problems) > 0 {
				t.Errorf("Gemini %s:\n  %s", fd.Name, strings.Join(problems, "\n  "))
			}
		}
	}
}

func TestDefinitionsMCP(t *testing.T) {
	for _, set := range []Set{Combined, PerAction} {
		for _, tl := range MCPDefinitions(set) {
			var problems []string
			if !mcpName.MatchString(tl.Name) || tl.Title == "" {
				problems = append(problems, "name "+tl.Name+" title "+tl.Title)
			}
			problems = append(problems, checkDescription(tl.Name, tl.Description)...)
			problems = append(problems, checkParameters(dialectPlain, tl.InputSchema)...)
			var out map[string]any
			if err := json.Unmarshal(tl.OutputSchema, &out); err != nil || out["type"] != "object" {
				problems = append(problems, fmt.Sprintf("output schema %s", tl.OutputSchema))
			}
			a := tl.Annotations
			if a.ReadOnlyHint && a.DestructiveHint || a.OpenWorldHint {
				problems = append(problems, fmt.Sprintf("annotations %+v", a))
			}
			if len(problems) > 0 {
				t.Errorf("MCP %s:\n  %s", tl.Name, strings.Join(problems, "\n  "))
			}
		}
	}
	// The hints hosts act on.
	hints := map[string]MCPAnnotations{}
	for _, tl := range MCPDefinitions(PerAction) {
		hints[strings.TrimPrefix(tl.Name, NamePrefix)] = tl.Annotations
	}
	for _, a := range []string{ActionStatus, ActionListMine, ActionListChildren, ActionExplain} {
		if !hints[a].ReadOnlyHint {
			t.Errorf("%s is not read-only", a)
		}
	}
	for _, a := range []string{ActionAdvance, ActionFinish, ActionFail, ActionCancel} {
		if !hints[a].DestructiveHint || hints[a].ReadOnlyHint {
			t.Errorf("%s is not destructive", a)
		}
	}
	if h := hints[ActionStart]; h.ReadOnlyHint || h.DestructiveHint || h.IdempotentHint {
		t.Errorf("start: %+v", h)
	}
	if c := MCPDefinitions(Combined)[0].Annotations; c.ReadOnlyHint || !c.DestructiveHint {
		t.Errorf("combined: %+v", c)
	}
}

// Per-action requirements live in the per-action schemas' required lists.
func TestDefinitionsPerActionRequired(t *testing.T) {
	want := map[string][]string{
		ActionStart: {"controller_id", "goal"}, ActionStatus: {"flow_id"}, ActionAdvance: {"flow_id"},
		ActionWait: {"flow_id", "wait_condition"}, ActionFinish: {"flow_id"}, ActionFail: {"flow_id", "reason"},
		ActionCancel: {"flow_id"}, ActionListMine: nil,
		ActionSpawn: {"flow_id", "children"}, ActionWaitChildren: {"flow_id"}, ActionListChildren: {"flow_id"},
		ActionExplain: {"flow_id"}, ActionSchedule: {"name", "controller_id", "goal"}, ActionListSchedules: nil,
		ActionUnschedule: {"name"},
	}
	for _, tl := range AnthropicDefinitions(PerAction) {
		var s struct {
			Required []string `json:"required"`
		}
		_ = json.Unmarshal(tl.InputSchema, &s)
		a := strings.TrimPrefix(tl.Name, NamePrefix)
		if !reflect.DeepEqual(s.Required, want[a]) {
			t.Errorf("%s: required %v, want %v", tl.Name, s.Required, want[a])
		}
	}
	// Every property of the combined tool belongs to some action's tool.
	props, _ := sourceSchema()
	used := map[string]bool{"action": true}
	for _, a := range actionSpecs {
		for _, p := range a.props {
			used[p] = true
		}
	}
	for _, p := range props {
		if !used[p.name] {
			t.Errorf("property %q of the combined tool is in no per-action tool (add it to actionSpecs)", p.name)
		}
	}
	if got := Names(PerAction); len(got) != len(Actions()) {
		t.Fatalf("Names = %v", got)
	}
}

func TestDefinitionsDescriptionFigures(t *testing.T) {
	for _, c := range []struct {
		shape string
		desc  string
	}{
		{"plain (OpenAI, Anthropic, MCP)", OpenAIDefinitions(Combined, false)[0].Function.Description},
		{"strict / Gemini", OpenAIDefinitions(Combined, true)[0].Function.Description},
	} {
		n := utf8.RuneCountInString(c.desc)
		t.Logf("combined tool description, %s: %d characters (limit %d)", c.shape, n, MaxDescription)
		if n > MaxDescription {
			t.Errorf("%s: %d characters", c.shape, n)
		}
	}
	longest := 0
	for _, tl := range OpenAIDefinitions(PerAction, true) {
		longest = max(longest, utf8.RuneCountInString(tl.Function.Description))
	}
	t.Logf("longest per-action description: %d characters", longest)
	// The strict and Gemini descriptions name the *_json arguments.
	if d := GeminiDefinitions(Combined)[0].Description; !strings.Contains(d, "state_json") || strings.Contains(d, "{state}") {
		t.Fatalf("Gemini description: %s", d)
	}
}

// The golden file of every shape, under testdata/tools/.
func TestDefinitionsGolden(t *testing.T) {
	shapes := map[string]any{
		"openai":        OpenAIDefinitions(Combined, false),
		"openai-strict": OpenAIDefinitions(Combined, true),
		"anthropic":     AnthropicDefinitions(Combined),
		"gemini":        GeminiDefinitions(Combined),
		"mcp":           MCPDefinitions(Combined),
	}
	for name, v := range map[string]any{
		"openai":        OpenAIDefinitions(PerAction, false),
		"openai-strict": OpenAIDefinitions(PerAction, true),
		"anthropic":     AnthropicDefinitions(PerAction),
		"gemini":        GeminiDefinitions(PerAction),
		"mcp":           MCPDefinitions(PerAction),
	} {
		shapes[name+"-actions"] = v
	}
	for name, v := range shapes {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", "tools", name+".golden.json")
		if *updateToolGolden {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -run TestDefinitionsGolden -update to create it)", err)
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("%s differs from %s (run with -update if the change is intended)", name, path)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// The strict and Gemini argument forms work through Call, and the
// per-action tools through CallTool, on every backend.
func TestCallShapes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tool := New(e.m)
		ctx := e.ctx
		call := func(name, args string) map[string]any {
			t.Helper()
			raw, err := tool.CallTool(ctx, sessA, name, json.RawMessage(args))
			if err != nil {
				t.Fatalf("CallTool(%s, %s): %v", name, args, err)
			}
			res := decodeResult(t, raw)
			if res["ok"] != true {
				t.Fatalf("CallTool(%s, %s) = %s", name, args, raw)
			}
			return res
		}
		flowOf := func(res map[string]any) map[string]any { return res["flow"].(map[string]any) }

		// Strict combined: every property present, nulls for the unused,
		// state as a JSON string.
		f := flowOf(call(Name, `{"action":"start","flow_id":null,"controller_id":"kate/c","goal":"g","current_step":null,
			"state_json":"{\"n\":1,\"big\":12345678901234567890}","patch_json":null,"wait_condition":null,"final_state_json":null,"reason":null}`))
		id := f["id"].(string)
		if f["current_step"] != "init" || fmt.Sprint(f["state"]) != "map[big:12345678901234567890 n:1]" {
			t.Fatalf("strict start: %v", f)
		}
		// Per-action tools, action implied.
		f = flowOf(call("taskflow_advance", `{"flow_id":"`+id+`","patch_json":"{\"n\":2}","current_step":"two"}`))
		if f["current_step"] != "two" || fmt.Sprint(f["state"]) != "map[big:12345678901234567890 n:2]" {
			t.Fatalf("advance: %v", f)
		}
		at := e.clock.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		f = flowOf(call("taskflow_wait", `{"action":"wait","flow_id":"`+id+`","wait_condition":{"kind":"timer","at":"`+at+`","topic":null,"correlation_id":null}}`))
		if f["status"] != "waiting" {
			t.Fatalf("wait: %v", f)
		}
		if res := call("taskflow_list_mine", ``); num(t, res["count"]) != 1 {
			t.Fatalf("list_mine: %v", res)
		}
		call("taskflow_status", `{"flow_id":"{`+strings.ToUpper(id)+`}"}`)
		call("taskflow_cancel", `{"flow_id":"urn:uuid:`+id+`"}`)
		id2 := flowOf(call("taskflow_start", `{"controller_id":"kate/c","goal":"g","state":{"a":1}}`))["id"].(string)
		f = flowOf(call("taskflow_finish", `{"flow_id":"`+id2+`","final_state_json":"{\"done\":true}"}`))
		if f["status"] != "finished" || fmt.Sprint(f["state"]) != "map[a:1 done:true]" {
			t.Fatalf("finish: %v", f)
		}
		id3 := flowOf(call("taskflow_start", `{"controller_id":"kate/c","goal":"g"}`))["id"].(string)
		if f = flowOf(call("taskflow_fail", `{"flow_id":"`+id3+`","reason":"r"}`)); f["status"] != "failed" {
			t.Fatalf("fail: %v", f)
		}

		// Refusals change nothing.
		before := e.dump()
		for _, c := range []struct{ name, args, text string }{
			{"taskflow_delete", `{}`, "unknown tool"},
			{"taskflow_status", `{"action":"cancel","flow_id":"` + id + `"}`, `runs the action "status"`},
			{"taskflow_status", `[1]`, "must be a JSON object"},
			{Name, `{"action":"start","controller_id":"kate/c","goal":"g","state_json":"[1]"}`, `"state_json" must hold a JSON object`},
			{Name, `{"action":"start","controller_id":"kate/c","goal":"g","state_json":{"a":1}}`, `"state_json" must be a string`},
			{Name, `{"action":"start","controller_id":"kate/c","goal":"g","state_json":"{bad"}`, `"state_json" must hold a JSON object`},
			{Name, `{"action":"start","controller_id":"kate/c","goal":"g","state":{},"state_json":"{}"}`, "not both"},
			{"taskflow_advance", `{"flow_id":"` + id + `","patch_json":null,"current_step":null}`, `advance needs "patch"`},
			{Name, "{\"action\":\"start\",\"controller_id\":\"kate/c\",\"goal\":\"g\",\"state_json\":\"{\\\"a\\\":\\\"\xff\\\"}\"}", "not valid UTF-8"},
		} {
			raw, err := tool.CallTool(ctx, sessA, c.name, json.RawMessage(c.args))
			if !errors.Is(err, ErrArgs) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("CallTool(%s, %s) = %s, %v; want ErrArgs with %q", c.name, c.args, raw, err, c.text)
			}
		}
		e.sameDump(t, before, "refused shape calls")
		// Another session is refused through the per-action tools too.
		if _, err := tool.CallTool(ctx, sessB, "taskflow_status", json.RawMessage(`{"flow_id":"`+id+`"}`)); !errors.Is(err, ErrForbidden) {
			t.Fatalf("other session: %v", err)
		}
	})
}

// The checks catch what the providers refuse: the plain schema (free-form
// objects, optional properties) fails strict mode and Gemini, a long
// description fails, a top-level combinator fails.
func TestDefinitionsChecksCatch(t *testing.T) {
	plain := OpenAIDefinitions(Combined, false)[0].Function.Parameters
	strict := checkParameters(dialectStrict, plain)
	for _, want := range []string{"additionalProperties:false", "every property required", "without properties"} {
		if !strings.Contains(strings.Join(strict, "\n"), want) {
			t.Errorf("strict check of the plain schema lacks %q: %v", want, strict)
		}
	}
	if gem := checkParameters(dialectGemini, plain); !strings.Contains(strings.Join(gem, "\n"), "not a type of this dialect") {
		t.Errorf("Gemini check of the plain schema: %v", gem)
	}
	if p := checkDescription("x", strings.Repeat("a", MaxDescription+1)); len(p) != 1 {
		t.Errorf("long description: %v", p)
	}
	if p := checkParameters(dialectPlain, json.RawMessage(`{"type":"object","properties":{},"oneOf":[]}`)); len(p) == 0 {
		t.Error("a top-level oneOf passed")
	}
}

// Every object schema of the plain shapes (OpenAI, Anthropic, MCP) says
// additionalProperties:false, as strict mode does (the free-form state,
// patch and final_state aside); Gemini's Schema has no such keyword. The
// per-action tools' properties describe their own action only: no
// "Required by status, advance, ..." or "start:" lead from the combined
// tool.
func TestDefinitionsClosedAndOwnWording(t *testing.T) {
	var objects func(path string, node map[string]any, fn func(path string, node map[string]any))
	objects = func(path string, node map[string]any, fn func(string, map[string]any)) {
		if props, ok := node["properties"].(map[string]any); ok {
			fn(path, node)
			for k, v := range props {
				if child, ok := v.(map[string]any); ok {
					objects(path+"."+k, child, fn)
				}
			}
		}
	}
	decode := func(raw json.RawMessage) map[string]any {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	plain := map[string]json.RawMessage{}
	for _, set := range []Set{Combined, PerAction} {
		for _, tl := range OpenAIDefinitions(set, false) {
			plain["openai "+tl.Function.Name] = tl.Function.Parameters
		}
		for _, tl := range AnthropicDefinitions(set) {
			plain["anthropic "+tl.Name] = tl.InputSchema
		}
		for _, tl := range MCPDefinitions(set) {
			plain["mcp "+tl.Name] = tl.InputSchema
		}
		for _, tl := range GeminiDefinitions(set) {
			if len(tl.Parameters) > 0 && bytes.Contains(tl.Parameters, []byte("additionalProperties")) {
				t.Errorf("gemini %s has additionalProperties", tl.Name)
			}
		}
	}
	closed := 0
	for name, raw := range plain {
		objects(name, decode(raw), func(path string, node map[string]any) {
			closed++
			if node["additionalProperties"] != false {
				t.Errorf("%s: no additionalProperties:false", path)
			}
		})
	}
	if closed < len(plain) {
		t.Fatalf("only %d closed objects in %d schemas", closed, len(plain))
	}
	leads := regexp.MustCompile(`^(start|status|advance|wait|finish|fail|cancel|spawn|wait_children|list_children|explain)\b[^:]*: `)
	for _, tl := range MCPDefinitions(PerAction) {
		props := decode(tl.InputSchema)["properties"].(map[string]any)
		for k, v := range props {
			desc, _ := v.(map[string]any)["description"].(string)
			if strings.Contains(desc, "Required by") || leads.MatchString(desc) || desc == "" {
				t.Errorf("%s.%s: %q carries the combined tool's wording", tl.Name, k, desc)
			}
		}
	}
	start := decode(MCPDefinitions(PerAction)[0].InputSchema)["properties"].(map[string]any)
	if d := start["current_step"].(map[string]any)["description"].(string); !strings.Contains(d, `default "init"`) {
		t.Errorf("taskflow_start's current_step lost its default: %q", d)
	}
}
