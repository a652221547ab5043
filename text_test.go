package taskflow

import (
	"encoding/json"
	"testing"
)

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
