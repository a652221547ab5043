package agenttool

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
)

// FuzzCall sends any arguments of any session to Call: it answers with a
// JSON result or an error, never both and never a panic.
func FuzzCall(f *testing.F) {
	for _, s := range []string{
		`{"action":"start","controller_id":"c","goal":"g"}`, `{"action":"list_mine"}`,
		`{"action":"status","flow_id":"00000000-0000-0000-0000-000000000000"}`,
		`{"action":"wait","flow_id":"x","wait_condition":{"kind":"timer","at":"2000-01-01T00:00:00Z"}}`,
		`{"action":"advance","flow_id":"` + uuid.NewString() + `","patch":[1]}`, `{"action":7}`, `[]`, `null`, `{`,
		`{"action":"start","controller_id":"c","goal":"g","state":{"a":1e999}}`,
		`{"action":"spawn","flow_id":"` + uuid.NewString() + `","children":[{"key":"k","controller_id":"kate/c","goal":"g","state_json":"{}","current_step":null}]}`,
		`{"action":"wait_children","flow_id":"x","need":-1,"timeout_seconds":1e99}`, `{"action":"list_children","flow_id":"x","cursor":"-1"}`,
		`{"action":"explain","flow_id":"` + uuid.NewString() + `"}`, `{"action":"explain","flow_id":"{x}","facts":{}}`,
	} {
		f.Add(s, "kate", "s-1")
	}
	mr := miniredis.RunT(f)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	f.Cleanup(func() { _ = c.Close() })
	s, err := taskflow.NewRedisStore(c, taskflow.WithPrefix("fuzz"))
	if err != nil {
		f.Fatal(err)
	}
	tool := New(taskflow.NewManager(s))
	var mu sync.Mutex
	f.Fuzz(func(t *testing.T, args, agent, session string) {
		mu.Lock()
		defer mu.Unlock()
		res, err := tool.Call(context.Background(), Session{AgentID: agent, SessionID: session}, json.RawMessage(args))
		if err != nil {
			if res != nil {
				t.Fatalf("both a result and an error: %s %v", res, err)
			}
			return
		}
		if !json.Valid(res) {
			t.Fatalf("result is not JSON: %q", res)
		}
	})
}

// TestBadInputLeavesRedisUnchanged sends the tool hostile calls; each
// gets a clear error and Redis stays byte-for-byte the same.
func TestBadInputLeavesRedisUnchanged(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, taskflow.CreateManagedInput{
			ControllerID:    "kate/bible-upload",
			Goal:            "upload chapter 1",
			OwnerSessionKey: Session{AgentID: "kate", SessionID: "abc"}.OwnerKey(),
			RequesterOrigin: "user-1",
			CurrentStep:     "verse-0",
			State:           map[string]any{"verses_done": 0, "total": 31},
		})))
		tool := New(e.m)
		cases := []struct {
			name string
			call func() error
			want error
		}{
			{"tool wait topic lone surrogate", func() error {
				_, err := tool.Call(ctx, Session{AgentID: "kate", SessionID: "abc"}, json.RawMessage(`{"action":"status","flow_id":"`+f.ID.String()+`"}`))
				if err != nil {
					return err
				}
				_, err = tool.Call(ctx, Session{AgentID: "kate", SessionID: "abc"}, json.RawMessage(`{"action":"wait","flow_id":"`+f.ID.String()+`","wait_condition":{"kind":"external_event","topic":"\udbff","correlation_id":"c"}}`))
				return err
			}, ErrArgs},
			{"tool invalid uuid", func() error {
				_, err := tool.Call(ctx, Session{AgentID: "kate", SessionID: "abc"}, json.RawMessage(`{"action":"status","flow_id":"../../etc"}`))
				return err
			}, ErrArgs},
			{"tool patch as array", func() error {
				_, err := tool.Call(ctx, Session{AgentID: "kate", SessionID: "abc"}, json.RawMessage(`{"action":"advance","flow_id":"`+f.ID.String()+`","patch":[1]}`))
				return err
			}, ErrArgs},
			{"tool other session", func() error {
				_, err := tool.Call(ctx, Session{AgentID: "mallory", SessionID: "abc"}, json.RawMessage(`{"action":"cancel","flow_id":"`+f.ID.String()+`"}`))
				return err
			}, ErrForbidden},
		}
		for _, c := range cases {
			before := e.dump()
			err := c.call()
			if !errors.Is(err, c.want) {
				t.Errorf("%s: error %v, want %v", c.name, err, c.want)
				continue
			}
			if err.Error() == "" || strings.Count(err.Error(), "\n") > 0 {
				t.Errorf("%s: unclear error %q", c.name, err.Error())
			}
			if after := e.dump(); !reflect.DeepEqual(before, after) {
				t.Errorf("%s: Redis changed", c.name)
			}
		}
	})
}
