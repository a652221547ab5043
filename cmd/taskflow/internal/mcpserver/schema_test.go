package mcpserver

import (
	"encoding/json"
	"testing"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/taskflow-dev/taskflow/agenttool"
)

// resolve compiles a JSON Schema with the validator the MCP SDK uses.
func resolve(t *testing.T, raw json.RawMessage) *jsonschema.Resolved {
	t.Helper()
	var s jsonschema.Schema
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("schema %s: %v", raw, err)
	}
	rs, err := s.Resolve(nil)
	if err != nil {
		t.Fatalf("resolving %s: %v", raw, err)
	}
	return rs
}

// outputSchemas are the MCP tools' output schemas, by tool name.
func outputSchemas(t *testing.T) map[string]*jsonschema.Resolved {
	t.Helper()
	out := map[string]*jsonschema.Resolved{}
	for _, set := range []agenttool.Set{agenttool.Combined, agenttool.PerAction} {
		for _, tl := range agenttool.MCPDefinitions(set) {
			out[tl.Name] = resolve(t, tl.OutputSchema)
		}
	}
	return out
}

func validate(t *testing.T, rs *jsonschema.Resolved, doc string) error {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatal(err)
	}
	return rs.Validate(v)
}

// The strict-mode schemas are real JSON Schemas that take the argument
// form Call decodes (every property, nulls, *_json strings) and refuse a
// missing or an extra property, as OpenAI's strict mode will.
func TestStrictSchemasValidate(t *testing.T) {
	byName := map[string]*jsonschema.Resolved{}
	for _, set := range []agenttool.Set{agenttool.Combined, agenttool.PerAction} {
		for _, tl := range agenttool.OpenAIDefinitions(set, true) {
			byName[tl.Function.Name] = resolve(t, tl.Function.Parameters)
		}
	}
	id := "123e4567-e89b-12d3-a456-426614174000"
	for _, c := range []struct {
		tool, args string
		ok         bool
	}{
		{"taskflow_start", `{"controller_id":"c","goal":"g","current_step":null,"state_json":"{\"n\":1}","idempotency_key":null,"attributes_json":"{\"customer\":\"acme\"}"}`, true},
		{"taskflow_start", `{"controller_id":"c","goal":"g","current_step":null,"state_json":null,"idempotency_key":null,"attributes_json":null}`, true},
		{"taskflow_start", `{"controller_id":"c","goal":"g","current_step":null,"state_json":null,"idempotency_key":null}`, false}, // attributes_json missing
		{"taskflow_start", `{"controller_id":"c","goal":"g","current_step":null}`, false},                                          // state_json missing
		{"taskflow_start", `{"controller_id":"c","goal":"g","current_step":null,"state_json":null,"state":{}}`, false},             // extra
		{"taskflow_wait", `{"flow_id":"` + id + `","wait_condition":{"kind":"manual","at":null,"topic":null,"correlation_id":null}}`, true},
		{"taskflow_wait", `{"flow_id":"` + id + `","wait_condition":{"kind":"manual"}}`, false},
		{"taskflow_list_mine", `{"status":null,"controller_id":null,"attribute":null,"cursor":null,"limit":null}`, true},
		{"taskflow_list_mine", `{"status":"waiting","controller_id":"kate/c","attribute":"customer=acme","cursor":null,"limit":10}`, true},
		{"taskflow_list_mine", `{"status":"done","controller_id":null,"attribute":null,"cursor":null,"limit":null}`, false}, // no such status
		{"taskflow_list_mine", `{}`, false}, // the nulls missing
		{"taskflow", `{"action":"status","flow_id":"` + id + `","controller_id":null,"goal":null,"current_step":null,"state_json":null,
			"patch_json":null,"wait_condition":null,"final_state_json":null,"reason":null,"idempotency_key":null,
			"attributes_json":null,"status":null,"attribute":null,"children":null,"need":null,"fail_fast":null,"deadline":null,"timeout_seconds":null,"cursor":null,"limit":null,
			"name":null,"cron":null,"every_seconds":null,"time_zone":null}`, true},
		{"taskflow_schedule", `{"name":"n","cron":null,"every_seconds":60,"time_zone":null,"controller_id":"c","goal":"g","current_step":null,"state_json":null}`, true},
		{"taskflow_schedule", `{"name":"n","every_seconds":60,"controller_id":"c","goal":"g"}`, false}, // the nulls missing
		{"taskflow_list_schedules", `{}`, true},
		{"taskflow_unschedule", `{"name":"n"}`, true},
		{"taskflow_unschedule", `{"name":"n","flow_id":null}`, false}, // extra
		{"taskflow_spawn", `{"flow_id":"` + id + `","children":[{"key":"k","controller_id":"c","goal":"g","current_step":null,"state_json":"{}","attributes_json":"{\"chapter\":\"1\"}","on_parent_close":null}]}`, true},
		{"taskflow_spawn", `{"flow_id":"` + id + `","children":[{"key":"k","controller_id":"c","goal":"g"}]}`, false}, // the item's nulls missing
		{"taskflow_spawn", `{"flow_id":"` + id + `","children":[{"key":"k","controller_id":"c","goal":"g","current_step":null,"state_json":null,"attributes_json":null,"on_parent_close":null,"owner_session_key":"o"}]}`, false},
		{"taskflow_spawn", `{"flow_id":"` + id + `","children":[{"key":"k","controller_id":"c","goal":"g","current_step":null,"state_json":null,"attributes_json":null,"on_parent_close":"orphan"}]}`, false},
		{"taskflow_wait_children", `{"flow_id":"` + id + `","need":1,"fail_fast":null,"deadline":null,"timeout_seconds":60}`, true},
		{"taskflow_list_children", `{"flow_id":"` + id + `","cursor":null,"limit":null}`, true},
		{"taskflow_explain", `{"flow_id":"` + id + `"}`, true},
		{"taskflow_explain", `{"flow_id":"` + id + `","cursor":null}`, false}, // extra
		{"taskflow", `{"action":"status","flow_id":"` + id + `"}`, false},
	} {
		err := validate(t, byName[c.tool], c.args)
		if (err == nil) != c.ok {
			t.Errorf("%s %s: valid=%v, want %v (%v)", c.tool, c.args, err == nil, c.ok, err)
		}
	}
	// The output schemas refuse a result of another shape.
	out := outputSchemas(t)
	for _, bad := range []string{`{"ok":"yes"}`, `{"flow":{}}`, `{"ok":true,"flow":{"id":"x"}}`} {
		if validate(t, out["taskflow_status"], bad) == nil {
			t.Errorf("the output schema takes %s", bad)
		}
	}
	// The plain per-action schemas require each action's arguments.
	for _, tl := range agenttool.MCPDefinitions(agenttool.PerAction) {
		if tl.Name == "taskflow_fail" {
			rs := resolve(t, tl.InputSchema)
			if validate(t, rs, `{"flow_id":"`+id+`"}`) == nil || validate(t, rs, `{"flow_id":"`+id+`","reason":"r"}`) != nil {
				t.Error("taskflow_fail's schema does not require reason")
			}
		}
	}
}
