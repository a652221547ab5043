package plainjson

import (
	"bytes"
	"testing"
)

func TestTextAsWritten(t *testing.T) {
	v := map[string]string{"goal": "a<b> & c"}
	b, err := Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"goal":"a<b> & c"}`; string(b) != want {
		t.Fatalf("Marshal: %s, want %s", b, want)
	}
	var buf bytes.Buffer
	if err := Encode(&buf, v, true); err != nil {
		t.Fatal(err)
	}
	if want := "{\n  \"goal\": \"a<b> & c\"\n}\n"; buf.String() != want {
		t.Fatalf("Encode indented: %q, want %q", buf.String(), want)
	}
}
