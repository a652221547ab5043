package taskflow

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// referenceMerge is the merge of the contract, written independently of
// the store: decode both documents generically, overwrite the patch's
// top-level keys, and re-encode values with their original bytes.
func referenceMerge(state, patch []byte) ([]byte, error) {
	compact := func(b []byte) ([]byte, error) {
		var buf bytes.Buffer
		err := json.Compact(&buf, b)
		return buf.Bytes(), err
	}
	p, err := compact(patch)
	if err != nil {
		return nil, err
	}
	st, err := compact(state)
	if err != nil {
		return nil, err
	}
	if len(p) == 0 || p[0] != '{' || st[0] != '{' {
		return p, nil
	}
	merged := map[string]json.RawMessage{}
	for _, doc := range [][]byte{st, p} {
		dec := json.NewDecoder(bytes.NewReader(doc))
		if _, err := dec.Token(); err != nil { // {
			return nil, err
		}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return nil, err
			}
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				return nil, err
			}
			merged[tok.(string)] = v
		}
	}
	keys := make([]string, 0, len(merged))
	for k := range merged {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out bytes.Buffer
	out.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			out.WriteByte(',')
		}
		enc := json.NewEncoder(&out)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(k)
		out.Truncate(out.Len() - 1)
		out.WriteByte(':')
		out.Write(merged[k])
	}
	out.WriteByte('}')
	return out.Bytes(), nil
}

// fuzzBackends: miniredis always; the real Redis too when
// TASKFLOW_FUZZ_REAL=1 (a short run, it is shared).
func fuzzBackends(t testing.TB) []backend {
	bs := backends(t)
	// The seed corpus runs on every backend in a normal test run;
	// generated inputs (go test -fuzz) stay on miniredis unless asked.
	fuzzing := flag.Lookup("test.fuzz") != nil && flag.Lookup("test.fuzz").Value.String() != ""
	if fuzzing && os.Getenv("TASKFLOW_FUZZ_REAL") != "1" {
		return bs[:1]
	}
	return bs
}

func FuzzShallowMerge(f *testing.F) {
	for _, seed := range [][2]string{
		{`{"a":1}`, `{"b":2}`}, {`{"a":9223372036854775807}`, `{"a":123456789012345678901234567890}`},
		{`{"x":[]}`, `{"y":{}}`}, {`[1,2]`, `{"a":null}`}, {`{"a":1}`, `"str"`}, {`{}`, `{}`},
		{`{"k":0.1}`, `{"k":-0.0,"j":1e300}`}, {`{"u":"\u0000 ☃"}`, `{"<&>":"a/b"}`}, {`{"a":1,"a":2}`, `{"a":3,"a":4}`},
	} {
		f.Add(seed[0], seed[1])
	}
	bs := fuzzBackends(f)
	envs := make([]*env, len(bs))
	for i, b := range bs {
		envs[i] = newEnv(f, b)
	}
	f.Fuzz(func(t *testing.T, state, patch string) {
		for _, e := range envs {
			in := CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o", State: json.RawMessage(state)}
			fl, err := e.m.CreateMirrored(e.ctx, in)
			if !validJSON(state) {
				if !errors.Is(err, ErrInvalidData) {
					t.Fatalf("invalid state %q accepted: %v", state, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("create with %q: %v", state, err)
			}
			got, err := e.m.UpdateState(e.ctx, fl.ID, json.RawMessage(patch), "")
			if !validJSON(patch) {
				if !errors.Is(err, ErrInvalidData) {
					t.Fatalf("invalid patch %q accepted: %v", patch, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("patch %q: %v", patch, err)
			}
			want, err := referenceMerge([]byte(state), []byte(patch))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.State, want) {
				t.Fatalf("%s: merge of %s and %s = %s, want %s", e.b.name, state, patch, got.State, want)
			}
			again := must(t, try(e.m.Get(e.ctx, fl.ID)))
			if !bytes.Equal(again.State, want) {
				t.Fatalf("%s: stored state %s, want %s", e.b.name, again.State, want)
			}
		}
	})
}

// validJSON is what the store accepts: JSON in UTF-8 whose top-level
// keys hold no lone UTF-16 surrogate escape.
func validJSON(s string) bool {
	if !json.Valid([]byte(s)) || !utf8.ValidString(s) {
		return false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal([]byte(s), &m) != nil {
		return true // not an object
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return checkObjectKeys(json.RawMessage(s), keys) == nil
}

func FuzzParseWaitCondition(f *testing.F) {
	for _, s := range []string{
		`{"kind":"timer","at":"2030-01-01T00:00:00Z"}`, `{"kind":"timer","at":"2030-01-01T00:00:00.123+02:00"}`,
		`{"kind":"external_event","topic":"t","correlation_id":"c"}`, `{"kind":"manual"}`,
		`{"kind":"timer"}`, `{}`, `[]`, `null`, `{"kind":"external_event","topic":""}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		w, err := ParseWaitCondition(json.RawMessage(raw))
		if err != nil {
			if !errors.Is(err, ErrInvalidData) {
				t.Fatalf("error does not wrap ErrInvalidData: %v", err)
			}
			return
		}
		b, err := json.Marshal(w)
		if err != nil {
			t.Fatalf("a parsed condition does not marshal: %v", err)
		}
		back, err := ParseWaitCondition(b)
		if err != nil || !back.At.Equal(w.At) || back.Kind != w.Kind || back.Topic != w.Topic || back.CorrelationID != w.CorrelationID {
			t.Fatalf("round trip %s -> %s: %+v vs %+v (%v)", raw, b, back, w, err)
		}
	})
}

// TestBadInputLeavesRedisUnchanged sends bad input through every public
// entry point; each gets a clear error and Redis stays byte-for-byte the
// same.
func TestBadInputLeavesRedisUnchanged(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		w := e.waitingFlow(t, WaitExternalEvent("mail", "m-1"))
		big := map[string]string{"k": strings.Repeat("x", defaultStateBytes+1)}
		cases := []struct {
			name string
			call func() error
			want error
		}{
			{"get nil uuid", func() error { _, err := e.m.Get(ctx, uuid.Nil); return err }, ErrNotFound},
			{"start unknown", func() error { _, err := e.m.StartRunning(ctx, uuid.New()); return err }, ErrNotFound},
			{"create empty controller", func() error {
				in := seedInput()
				in.ControllerID = ""
				_, err := e.m.CreateManaged(ctx, in)
				return err
			}, ErrInvalidData},
			{"create empty owner", func() error {
				in := seedInput()
				in.OwnerSessionKey = " "
				_, err := e.m.CreateManaged(ctx, in)
				return err
			}, ErrInvalidData},
			{"create non-JSON state", func() error {
				in := seedInput()
				in.State = []byte("{not json")
				_, err := e.m.CreateManaged(ctx, in)
				return err
			}, ErrInvalidData},
			{"create state over the limit", func() error {
				in := seedInput()
				in.State = big
				_, err := e.m.CreateManaged(ctx, in)
				return err
			}, ErrInvalidData},
			{"patch non-JSON", func() error { _, err := e.m.UpdateState(ctx, f.ID, json.RawMessage(`{"a":}`), ""); return err }, ErrInvalidData},
			{"patch over the limit", func() error { _, err := e.m.UpdateState(ctx, f.ID, big, ""); return err }, ErrInvalidData},
			{"patch unmarshalable", func() error { _, err := e.m.UpdateState(ctx, f.ID, func() {}, ""); return err }, ErrInvalidData},
			{"wait as an array", func() error { _, err := e.m.SetWaiting(ctx, f.ID, json.RawMessage(`[]`)); return err }, ErrInvalidData},
			{"wait as a string", func() error { _, err := e.m.SetWaiting(ctx, f.ID, "manual"); return err }, ErrInvalidData},
			// A wait of an unknown kind is kept (a manual wait); one without a kind is not.
			{"wait without a kind", func() error { _, err := e.m.SetWaiting(ctx, f.ID, json.RawMessage(`{"kind":""}`)); return err }, ErrInvalidData},
			{"timer unparsable", func() error {
				_, err := e.m.SetWaiting(ctx, f.ID, json.RawMessage(`{"kind":"timer","at":"soon"}`))
				return err
			}, ErrInvalidData},
			{"fail empty reason", func() error { _, err := e.m.Fail(ctx, f.ID, " "); return err }, ErrInvalidData},
			{"finish non-JSON", func() error { _, err := e.m.Finish(ctx, f.ID, []byte("}")); return err }, ErrInvalidData},
			{"resume non-JSON", func() error { _, err := e.m.Resume(ctx, w.ID, []byte("nope")); return err }, ErrInvalidData},
			{"external resume empty topic", func() error { _, err := e.m.TryResumeExternal(ctx, w.ID, "", "m-1", nil); return err }, ErrInvalidData},
			{"external resume bad payload", func() error { _, err := e.m.TryResumeExternal(ctx, w.ID, "mail", "m-1", []byte("{")); return err }, ErrInvalidData},
			{"publish empty correlation", func() error {
				return e.m.PublishResume(ctx, ResumeRequest{FlowID: w.ID, Topic: "mail"})
			}, ErrInvalidData},
			{"step empty run id", func() error {
				_, err := e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, Status: StepRunning})
				return err
			}, ErrInvalidData},
			{"step result over the limit", func() error {
				_, err := e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "r", Status: StepRunning, Result: big})
				return err
			}, ErrInvalidData},
			{"insert step bad runtime", func() error {
				return e.store.InsertStep(ctx, &FlowStep{FlowID: f.ID, RunID: "r", Runtime: "alien", Status: StepPending})
			}, ErrInvalidData},
			{"write flow bad status", func() error {
				g := *f
				g.Status = "paused"
				_, _, err := e.store.UpdateAndAppend(ctx, &g, "x", nil)
				return err
			}, ErrInvalidData},
			{"write flow other owner", func() error {
				g := *f
				g.OwnerSessionKey = "agent:mallory:session:1"
				_, _, err := e.store.UpdateAndAppend(ctx, &g, "x", nil)
				return err
			}, ErrInvalidData},
			{"list bad cursor", func() error { _, err := e.m.ListByOwner(ctx, "o", WithCursor("x")); return err }, ErrInvalidData},
			{"list empty owner", func() error { _, err := e.m.ListByOwner(ctx, ""); return err }, ErrInvalidData},
			{"list bad status", func() error { _, err := e.m.ListByStatus(ctx, "nope"); return err }, ErrInvalidData},
			{"prune negative", func() error { _, err := e.m.PruneTerminalFlows(ctx, -time.Hour); return err }, ErrInvalidData},
			// Strings that are not UTF-8 would be stored as given but read
			// back altered (and \xfe, \xff would collide): refused.
			{"create controller not UTF-8", func() error {
				in := seedInput()
				in.ControllerID = "ctl\xfe"
				_, err := e.m.CreateManaged(ctx, in)
				return err
			}, ErrInvalidData},
			{"create goal not UTF-8", func() error {
				in := seedInput()
				in.Goal = "goal\xff"
				_, err := e.m.CreateMirrored(ctx, in)
				return err
			}, ErrInvalidData},
			{"create owner not UTF-8", func() error {
				in := seedInput()
				in.OwnerSessionKey = "agent:\xfe:session:1"
				_, err := e.m.CreateManaged(ctx, in)
				return err
			}, ErrInvalidData},
			{"create step not UTF-8", func() error {
				in := seedInput()
				in.CurrentStep = "\xff"
				_, err := e.m.CreateManaged(ctx, in)
				return err
			}, ErrInvalidData},
			{"create state lone surrogate keys", func() error {
				in := seedInput()
				in.State = json.RawMessage(`{"\ud800":1,"\udbff":2}`)
				_, err := e.m.CreateManaged(ctx, in)
				return err
			}, ErrInvalidData},
			{"patch lone surrogate key", func() error {
				_, err := e.m.UpdateState(ctx, f.ID, json.RawMessage(`{"\udbff":2,"ok":1}`), "")
				return err
			}, ErrInvalidData},
			{"patch low surrogate key", func() error {
				_, err := e.m.UpdateState(ctx, f.ID, json.RawMessage(`{"a\udc00b":2}`), "")
				return err
			}, ErrInvalidData},
			{"update step not UTF-8", func() error { _, err := e.m.UpdateState(ctx, f.ID, nil, "s\xfe"); return err }, ErrInvalidData},
			{"wait topic not UTF-8", func() error {
				_, err := e.m.SetWaiting(ctx, f.ID, WaitExternalEvent("mail\xfe", "m-2"))
				return err
			}, ErrInvalidData},
			{"wait correlation not UTF-8", func() error {
				_, err := e.m.SetWaiting(ctx, f.ID, WaitExternalEvent("mail", "m-\xff"))
				return err
			}, ErrInvalidData},
			{"wait topic lone surrogate", func() error {
				_, err := e.m.SetWaiting(ctx, f.ID, json.RawMessage(`{"kind":"external_event","topic":"\ud800","correlation_id":"c"}`))
				return err
			}, ErrInvalidData},
			{"wait correlation lone surrogate", func() error {
				_, err := e.m.SetWaiting(ctx, f.ID, json.RawMessage(`{"kind":"external_event","topic":"t","correlation_id":"x\udbffy"}`))
				return err
			}, ErrInvalidData},
			{"external resume topic not UTF-8", func() error {
				_, err := e.m.TryResumeExternal(ctx, w.ID, "mail\xfe", "m-1", nil)
				return err
			}, ErrInvalidData},
			{"resume by correlation not UTF-8", func() error {
				_, err := e.m.ResumeByCorrelation(ctx, "mail", "m-1\xff", nil)
				return err
			}, ErrInvalidData},
			{"publish topic not UTF-8", func() error {
				return e.m.PublishResume(ctx, ResumeRequest{FlowID: w.ID, Topic: "\xfe", CorrelationID: "m-1"})
			}, ErrInvalidData},
			{"write flow goal not UTF-8", func() error {
				g := *f
				g.Goal = "\xff"
				_, _, err := e.store.UpdateAndAppend(ctx, &g, "x", nil)
				return err
			}, ErrInvalidData},
			{"write flow controller not UTF-8", func() error {
				g := *f
				g.ControllerID = "\xfe"
				_, _, err := e.store.UpdateAndAppend(ctx, &g, "x", nil)
				return err
			}, ErrInvalidData},
			{"fail reason not UTF-8", func() error { _, err := e.m.Fail(ctx, f.ID, "bad \xff"); return err }, ErrInvalidData},
			{"step run id not UTF-8", func() error {
				_, err := e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "r\xfe", Status: StepRunning})
				return err
			}, ErrInvalidData},
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

// TestAwkwardStringsWork: braces, colons, NUL and long strings are data,
// never key syntax: they work, stay isolated, and keep the layout sound.
func TestAwkwardStringsWork(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		victim := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		long := strings.Repeat("é", 5000)     // 10,000 bytes
		longLabel := strings.Repeat("é", 500) // 1,000 bytes: labels are capped at defaultLabelBytes
		owners := []string{
			"agent:{0}:session:}{", "x\x00y", longLabel,
			// Crafted to look like other keys of the flow space.
			e.prefix + ":{0}:flow:" + victim.ID.String(),
			"} :status:running", "*", "[a-z]?",
		}
		for _, owner := range owners {
			in := CreateManagedInput{
				ControllerID: "ctl:{" + owner, Goal: long, OwnerSessionKey: owner,
				CurrentStep: "\x00{}:", State: map[string]string{owner: owner, "{": "}"},
			}
			f := must(t, try(e.m.CreateMirrored(ctx, in)))
			f = must(t, try(e.m.UpdateState(ctx, f.ID, map[string]string{":": long}, "{step}")))
			f = must(t, try(e.m.SetWaiting(ctx, f.ID, WaitExternalEvent("{topic}:"+owner, "corr\x00"+owner))))
			got := must(t, try(e.m.ListByOwner(ctx, owner)))
			if len(got) != 1 || got[0].ID != f.ID || got[0].OwnerSessionKey != owner || got[0].Goal != long {
				t.Fatalf("owner %q: list %v", owner, got)
			}
			var st map[string]string
			if err := json.Unmarshal(got[0].State, &st); err != nil || st[owner] != owner || st[":"] != long {
				t.Fatalf("owner %q: state %v %v", owner, st, err)
			}
			if r := must(t, try(e.m.ResumeByCorrelation(ctx, "{topic}:"+owner, "corr\x00"+owner, nil))); len(r) != 1 {
				t.Fatalf("owner %q: resume by correlation %d", owner, len(r))
			}
		}
		// The victim is untouched and everything is consistent.
		v := must(t, try(e.m.Get(ctx, victim.ID)))
		if !reflect.DeepEqual(v, victim) {
			t.Fatalf("victim changed: %+v", v)
		}
		requireVerifyClean(t, e.m)
		n := must(t, try(e.m.PruneTerminalFlows(ctx, 0)))
		if n != 0 {
			t.Fatalf("pruned %d non-terminal flows", n)
		}
	})
}
