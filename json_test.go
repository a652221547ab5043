package taskflow

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// Stored JSON keeps '<', '>' and '&' as written: what redis-cli, taskflow
// show, the dashboard and other languages read is the caller's text, not
// encoding/json's HTML escapes (\u003c, \u003e, \u0026). Every value the
// library encodes is checked in the raw keys: the goal, the state, a
// patch, a wait condition, event payloads, a step result and the resume
// bridge's entries.
func TestStoredJSONIsNotHTMLEscaped(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		in := seedInput()
		in.Goal = "fetch <b>bold</b> & more"
		in.State = map[string]any{"url": "https://x.example/?a=1&b=2", "html": "<p>hi</p>"}
		f := must(t, try(e.m.CreateManaged(e.ctx, in)))
		must(t, try(e.m.StartRunning(e.ctx, f.ID)))
		must(t, try(e.m.UpdateState(e.ctx, f.ID, map[string]any{"note": "x > y && z"}, "")))
		must(t, try(e.m.RecordStepObservation(e.ctx, StepObservation{
			FlowID: f.ID, RunID: "r1", Task: "fetch <page>", Status: StepSucceeded,
			Result: map[string]any{"link": "/a?b=1&c=2"},
		})))
		must(t, try(e.m.SetWaiting(e.ctx, f.ID, WaitExternalEvent("orders&returns", "<c1>"))))
		must(t, try(e.m.TryResumeExternal(e.ctx, f.ID, "orders&returns", "<c1>", map[string]any{"msg": "<ok> & done"})))
		if err := e.m.PublishResume(e.ctx, ResumeRequest{FlowID: uuid.New(), Topic: "t", CorrelationID: "c", Payload: map[string]any{"q": "a&b<c>"}}); err != nil {
			t.Fatal(err)
		}
		raw := e.dump()
		streams := 0
		for k, v := range raw {
			if v == "stream:stream" {
				streams++
				for _, m := range e.client.XRange(e.ctx, k, "-", "+").Val() {
					for f, x := range m.Values {
						raw[k+" "+m.ID+" "+f] = x.(string)
					}
				}
			}
		}
		if streams == 0 {
			t.Fatal("no bridge stream to check")
		}
		all := ""
		for k, v := range raw {
			for _, esc := range []string{`\u003c`, `\u003e`, `\u0026`} {
				if strings.Contains(v, esc) {
					t.Errorf("%s holds %s: %s", k, esc, v)
				}
			}
			all += v + "\n"
		}
		for _, want := range []string{`<b>bold</b> & more`, `https://x.example/?a=1&b=2`, `<p>hi</p>`, `x > y && z`,
			`/a?b=1&c=2`, `orders&returns`, `<c1>`, `<ok> & done`, `a&b<c>`} {
			if !strings.Contains(all, want) {
				t.Errorf("no key holds %q as written", want)
			}
		}
	})
}

func TestHasLoneSurrogate(t *testing.T) {
	for in, want := range map[string]bool{
		`"plain"`:                    false,
		`"\ud83d\ude00"`:             false, // a pair: 😀
		`"\uD83D\uDE00"`:             false,
		`"\ufffd"`:                   false,
		`"\\ud800"`:                  false, // an escaped backslash, then text
		`"\u00e9\n\t\"\\"`:           false,
		`"\ud800"`:                   true,
		`"\udbff"`:                   true,
		`"\udc00"`:                   true, // a low half alone
		`"\ud800x"`:                  true,
		`"\ud800\u0041"`:             true, // followed by a non-surrogate
		`"\ud800\ud800\udc00"`:       true,
		`"\ude00\ud83d"`:             true, // a pair in the wrong order
		`{"a":"\ud83d\ude00\ud800"}`: true,
		`"\ud8`:                      false, // truncated: not an escape
	} {
		if got := hasLoneSurrogate([]byte(in)); got != want {
			t.Errorf("hasLoneSurrogate(%s) = %v, want %v", in, got, want)
		}
	}
}

// TestTextStillAccepted: what the UTF-8 and surrogate checks must not
// refuse: surrogate pairs and U+FFFD in keys, lone surrogates inside
// values (kept byte for byte), any valid UTF-8 in the record's strings.
func TestTextStillAccepted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		in := seedInput()
		in.Goal, in.ControllerID, in.CurrentStep = "déjà vu ☃ \ufffd", "kate/日本", "ステップ"
		in.State = json.RawMessage(`{"\ud83d\ude00":1,"\ufffd":2,"v":"\ud800"}`)
		f := must(t, try(e.m.CreateMirrored(e.ctx, in)))
		if string(f.State) != `{"v":"\ud800","`+"\ufffd"+`":2,"`+"\U0001F600"+`":1}` {
			t.Fatalf("state %s", f.State)
		}
		if f.Goal != in.Goal || f.ControllerID != in.ControllerID || f.CurrentStep != in.CurrentStep {
			t.Fatalf("record %+v", f)
		}
		w := must(t, try(e.m.SetWaiting(e.ctx, f.ID, json.RawMessage(`{"kind":"external_event","topic":"\ud83d\ude00","correlation_id":"é"}`))))
		got := must(t, try(e.m.ResumeByCorrelation(e.ctx, "\U0001F600", "é", nil)))
		if len(got) != 1 || got[0].ID != w.ID {
			t.Fatalf("resume by an emoji topic: %v", got)
		}
	})
}

// A flat map[string]any encodes to encoding/json's bytes without
// reflection; what the fast path declines takes encoding/json's way, so
// toJSON answers alike for a map and for the JSON of it.
func TestFlatMapMatchesEncodingJSON(t *testing.T) {
	maps := []map[string]any{
		{}, {"a": 1, "b": "x", "c": true, "d": nil, "e": 2.5},
		{"f": 1e21, "g": 1e20, "h": 1e-7, "i": 1e-6, "j": -0.0, "k": 0.1, "l": 123456789.0, "m": -1.5e-300},
		{"n": int64(-9223372036854775808), "o": uint64(18446744073709551615), "p": int32(7), "q": uint(3)},
		{"html": "<p>&amp;</p>", "uni": "héllo ☃ 😀", "z": "", "": "empty key"},
		// declined: the reflection path takes them
		{"nested": map[string]any{"a": 1}}, {"list": []any{1, 2}}, {"ctl": "a\nb"}, {"quote": `"`},
		{"sep": "\u2028"}, {"bad": "\xff"}, {"f32": float32(0.1)}, {"raw": json.RawMessage(`{"x": 1}`)},
	}
	for _, m := range maps {
		want, err := marshalJSON(m)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := appendFlatObject(nil, m); ok && string(got) != string(want) {
			t.Errorf("%v: fast path %s, encoding/json %s", m, got, want)
		}
		p, err := toJSON("patch", m)
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		w, _ := toJSON("patch", json.RawMessage(want))
		if string(p) != string(w) {
			t.Errorf("%v: toJSON %s, want %s", m, p, w)
		}
	}
	for _, m := range []map[string]any{{"nan": math.NaN()}, {"inf": math.Inf(1)}} {
		if _, err := toJSON("patch", m); !errors.Is(err, ErrInvalidData) {
			t.Errorf("%v: err %v, want ErrInvalidData", m, err)
		}
	}
	if p, err := toJSON("patch", map[string]any(nil)); err != nil || string(p) != "null" {
		t.Errorf("nil map: %s %v", p, err)
	}
	// A caller's compact bytes are copied: changing them later changes
	// nothing toJSON returned.
	in := json.RawMessage(`{"a":1}`)
	out, err := toJSON("patch", in)
	if err != nil {
		t.Fatal(err)
	}
	in[5] = '2'
	if string(out) != `{"a":1}` {
		t.Errorf("toJSON kept the caller's bytes: %s", out)
	}
}

// FuzzFlatMap: for any key, string, integer and float, the fast path
// writes encoding/json's bytes or declines.
func FuzzFlatMap(f *testing.F) {
	f.Add("a", "x", int64(1), 0.5, true)
	f.Add("", "<&>", int64(-1), 1e21, false)
	f.Add("é\u2028", "\x00\"\\", int64(math.MaxInt64), 1e-7, true)
	f.Add("k", "\xff", int64(math.MinInt64), -0.0, false)
	f.Fuzz(func(t *testing.T, k, s string, n int64, x float64, b bool) {
		m := map[string]any{k: s, k + "n": n, k + "x": x, k + "b": b, k + "z": nil}
		got, ok := appendFlatObject(nil, m)
		if !ok {
			return
		}
		want, err := marshalJSON(m)
		if err != nil {
			t.Fatalf("the fast path encoded what encoding/json refuses: %v", err)
		}
		if string(got) != string(want) {
			t.Fatalf("fast path %s, encoding/json %s", got, want)
		}
	})
}

// FuzzSplitObject: splitMembers agrees with encoding/json (the members,
// sorted, the last of duplicates kept, values byte for byte) on every
// input, and refuses what encoding/json refuses.
func FuzzSplitObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"b":[1,{"c":"}"}],"a":"x\"y"}`, ` { "a" : 1 , "a" : 2 } `,
		`{"k\u00e9":1}`, `{"a":{"b":{}},"c":null,"d":true,"e":-1.5e3}`, `{"a":"\\"}`, `{"a":1,}`, `[1]`, `{"\xff":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !isObject(raw) {
			return
		}
		ms, err := splitMembers(nil, raw)
		wantKeys, wantVals, wantErr := splitObjectDecoded(raw)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("%q: error %v, encoding/json %v", raw, err, wantErr)
		}
		if err != nil {
			return
		}
		if len(ms) != len(wantKeys) {
			t.Fatalf("%q: %d members %q, encoding/json %q", raw, len(ms), ms, wantKeys)
		}
		for i, m := range ms {
			if string(m.key) != wantKeys[i] || string(m.val) != string(wantVals[i]) {
				t.Fatalf("%q: member %d %q=%s, encoding/json %q=%s", raw, i, m.key, m.val, wantKeys[i], wantVals[i])
			}
		}
	})
}

// TestJSONString: jsonString writes what encoding/json does without HTML
// escaping, on its plain path and off it.
func TestJSONString(t *testing.T) {
	for _, s := range []string{"", "next-step", "a<b>&c", "say \"hi\"", `back\slash`, "tab\there", "\x7f", "é☃", "\u2028", "bad \xff"} {
		want, err := marshalJSON(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := jsonString(s); got != string(want) {
			t.Errorf("jsonString(%q) = %s, encoding/json %s", s, got, want)
		}
	}
}

// TestViewJSON: viewJSON hands back a caller's compact bytes themselves
// (toJSON copies them) and owns whatever it had to write.
func TestViewJSON(t *testing.T) {
	in := json.RawMessage(`{"a":1}`)
	raw, owned, err := viewJSON("patch", in)
	if err != nil || owned || &raw[0] != &in[0] {
		t.Fatalf("compact bytes: %s owned %v, %v", raw, owned, err)
	}
	for _, v := range []any{json.RawMessage(`{ "a": 1 }`), map[string]any{"a": 1}, struct{ A int }{1}} {
		raw, owned, err := viewJSON("patch", v)
		if err != nil || !owned {
			t.Fatalf("%#v: %s owned %v, %v", v, raw, owned, err)
		}
	}
}
