package taskflow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/taskflow-dev/taskflow/internal/plainjson"
)

// marshalJSON is json.Marshal without HTML escaping: every value the
// package encodes (stored state, payloads, wait conditions, the bridge's
// entries) keeps '<', '>' and '&' as written, so redis-cli, the CLI, the
// dashboard and other languages read the caller's text rather than
// \u003c, \u003e and \u0026. json.RawMessage values inside v keep
// their bytes too (encoding/json would re-escape them).
func marshalJSON(v any) (json.RawMessage, error) { return plainjson.Marshal(v) }

// toJSON turns a caller's value into compact JSON. nil stays nil (no
// value); json.RawMessage and []byte must hold valid JSON and are kept
// byte-for-byte apart from insignificant whitespace; anything else is
// marshalled with encoding/json. Failures wrap ErrInvalidData.
func toJSON(what string, v any) (json.RawMessage, error) {
	var raw []byte
	switch x := v.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		if x == nil {
			return nil, nil
		}
		raw = x
	case []byte:
		if x == nil {
			return nil, nil
		}
		raw = x
	default:
		b, err := marshalJSON(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %s does not marshal to JSON: %v", ErrInvalidData, what, err)
		}
		raw = b
	}
	if !json.Valid(raw) {
		return nil, fmt.Errorf("%w: %s is not valid JSON", ErrInvalidData, what)
	}
	if !utf8.Valid(raw) {
		// encoding/json would silently replace the bad bytes in keys.
		return nil, fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidData, what)
	}
	var buf bytes.Buffer
	buf.Grow(len(raw))
	if err := json.Compact(&buf, raw); err != nil {
		return nil, fmt.Errorf("%w: %s is not valid JSON: %v", ErrInvalidData, what, err)
	}
	return buf.Bytes(), nil
}

// isObject reports whether compact JSON is an object.
func isObject(raw json.RawMessage) bool { return len(raw) > 0 && raw[0] == '{' }

// splitObject splits a compact JSON object into its top-level keys and
// their raw values, sorted by key. Duplicate keys: the last one wins, as
// with encoding/json. The values keep their bytes exactly.
func splitObject(raw json.RawMessage) ([]string, []json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalidData, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	if err := checkObjectKeys(raw, keys); err != nil {
		return nil, nil, err
	}
	sort.Strings(keys)
	vals := make([]json.RawMessage, len(keys))
	for i, k := range keys {
		vals[i] = m[k]
	}
	return keys, vals, nil
}

// joinObject builds a JSON object from keys and raw values. Keys are
// sorted so the same state always reads back as the same bytes.
func joinObject(keys []string, vals [][]byte) json.RawMessage {
	idx := make([]int, len(keys))
	size := 2
	for i := range keys {
		idx[i] = i
		size += len(keys[i]) + len(vals[i]) + 4
	}
	sort.Slice(idx, func(a, b int) bool { return keys[idx[a]] < keys[idx[b]] })
	buf := bytes.NewBuffer(make([]byte, 0, size))
	buf.WriteByte('{')
	for n, i := range idx {
		if n > 0 {
			buf.WriteByte(',')
		}
		writeJSONString(buf, keys[i])
		buf.WriteByte(':')
		buf.Write(vals[i])
	}
	buf.WriteByte('}')
	return buf.Bytes()
}

// writeJSONString writes s as a JSON string without HTML escaping.
func writeJSONString(buf *bytes.Buffer, s string) {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			plain = false
			break
		}
	}
	if plain { // the common case: nothing to escape
		buf.WriteByte('"')
		buf.WriteString(s)
		buf.WriteByte('"')
		return
	}
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)           // a string always encodes
	buf.Truncate(buf.Len() - 1) // drop the encoder's newline
}

// jsonString returns s as a JSON string literal.
func jsonString(s string) string {
	var buf bytes.Buffer
	writeJSONString(&buf, s)
	return buf.String()
}

// checkText refuses strings that are not valid UTF-8. Such bytes would
// be stored as given but shown altered (JSON turns each bad byte into
// U+FFFD), so two different strings would read the same and the stored
// one could never be matched again. names and values alternate:
// checkText("goal", goal, "owner_session_key", owner).
func checkText(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if !utf8.ValidString(pairs[i+1]) {
			return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidData, pairs[i])
		}
	}
	return nil
}

// hasLoneSurrogate reports whether a JSON text holds a \u escape of a
// UTF-16 surrogate that is not part of a pair ("\ud800"). Decoding turns
// every such escape into U+FFFD, so different strings would become one.
func hasLoneSurrogate(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if i+1 >= len(b) || b[i+1] != 'u' {
			i++ // a two-byte escape: skip its second byte
			continue
		}
		r, ok := hex4(b[i+2:])
		if !ok {
			i++
			continue
		}
		i += 5 // on the escape's last hex digit
		switch {
		case r >= 0xd800 && r < 0xdc00:
			if i+6 < len(b) && b[i+1] == '\\' && b[i+2] == 'u' {
				if low, ok := hex4(b[i+3:]); ok && low >= 0xdc00 && low < 0xe000 {
					i += 6
					continue
				}
			}
			return true
		case r >= 0xdc00 && r < 0xe000:
			return true
		}
	}
	return false
}

// hex4 reads four hex digits.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// checkObjectKeys refuses a JSON object whose top-level keys include a
// lone surrogate escape: decoded, "\ud800" and "\udbff" are one key and
// one of the values would be lost. keys are the decoded keys; the raw
// text is only read when one of them holds U+FFFD (what a lone surrogate
// decodes to), so the common case costs nothing.
func checkObjectKeys(raw json.RawMessage, keys []string) error {
	suspect := false
	for _, k := range keys {
		if strings.ContainsRune(k, utf8.RuneError) {
			suspect = true
			break
		}
	}
	if !suspect {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // {
		return fmt.Errorf("%w: %v", ErrInvalidData, err)
	}
	for dec.More() {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidData, err)
		}
		if hasLoneSurrogate(raw[start:dec.InputOffset()]) {
			return fmt.Errorf("%w: the key %q holds a lone UTF-16 surrogate escape (\\ud800-\\udfff without its pair)", ErrInvalidData, tok)
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidData, err)
		}
	}
	return nil
}
