package taskflow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"unicode/utf8"
)

// marshalJSON is json.Marshal without HTML escaping: every value the
// package encodes (stored state, payloads, wait conditions, the bridge's
// entries) keeps '<', '>' and '&' as written, so redis-cli, the CLI, the
// dashboard and other languages read the caller's text rather than
// \u003c, \u003e and \u0026. json.RawMessage values inside v keep
// their bytes too (encoding/json would re-escape them).
func marshalJSON(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

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
