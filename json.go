package taskflow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
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
// marshalled with encoding/json, except a flat map[string]any (the
// common patch), which appendFlatObject writes to the same bytes without
// reflection. Failures wrap ErrInvalidData.
func toJSON(what string, v any) (json.RawMessage, error) {
	raw, owned, err := viewJSON(what, v)
	if err != nil || owned {
		return raw, err
	}
	// The caller's compact bytes, copied: they are theirs to change.
	return append(json.RawMessage(nil), raw...), nil
}

// viewJSON is toJSON without its copy of a caller's compact bytes: raw
// may be v's own memory (owned is false then), for a caller that only
// reads it before it returns.
func viewJSON(what string, v any) (raw json.RawMessage, owned bool, err error) {
	if m, ok := v.(map[string]any); ok && m != nil {
		// The common patch: encoded without reflection when it is flat.
		raw, owned = appendFlatObject(make([]byte, 0, 16+24*len(m)), m)
	}
	switch x := v.(type) {
	case nil:
		return nil, true, nil
	case json.RawMessage:
		if x == nil {
			return nil, true, nil
		}
		raw = x
	case []byte:
		if x == nil {
			return nil, true, nil
		}
		raw = x
	default:
		if owned {
			break
		}
		b, err := marshalJSON(v)
		if err != nil {
			return nil, false, fmt.Errorf("%w: %s does not marshal to JSON: %v", ErrInvalidData, what, err)
		}
		raw, owned = b, true
	}
	if !json.Valid(raw) {
		return nil, false, fmt.Errorf("%w: %s is not valid JSON", ErrInvalidData, what)
	}
	if !utf8.Valid(raw) {
		// encoding/json would silently replace the bad bytes in keys.
		return nil, false, fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidData, what)
	}
	if !bytes.ContainsAny(raw, " \t\r\n") {
		return raw, owned, nil // already compact: without the compactor's pass
	}
	var buf bytes.Buffer
	buf.Grow(len(raw))
	if err := json.Compact(&buf, raw); err != nil {
		return nil, false, fmt.Errorf("%w: %s is not valid JSON: %v", ErrInvalidData, what, err)
	}
	return buf.Bytes(), true, nil
}

// isObject reports whether compact JSON is an object.
func isObject(raw json.RawMessage) bool { return len(raw) > 0 && raw[0] == '{' }

// member is one top-level member of a JSON object: its key (without
// escapes) and its value's bytes.
type member struct {
	key, val []byte
}

// splitMembers appends the top-level members of JSON object raw to dst,
// sorted by key; of duplicate keys the last one wins, as with
// encoding/json. The values keep their bytes exactly.
//
// A valid object whose keys are plain (no escape, valid UTF-8: the keys
// programs write) is split by scanning its bytes once: its members share
// raw's memory, and nothing is allocated while dst has room for them. Any
// other input goes through encoding/json (decodedMembers), which also
// words the error of an invalid one.
func splitMembers(dst []member, raw json.RawMessage) ([]member, error) {
	if !json.Valid(raw) {
		return decodedMembers(dst, raw)
	}
	ms, ok := scanMembers(dst, raw)
	if !ok {
		return decodedMembers(dst, raw)
	}
	return sortMembers(ms), nil
}

// scanMembers appends the members of valid JSON object raw to dst in
// order (duplicate keys and all); ok is false when a key is not plain
// (an escape, invalid UTF-8) or raw is not an object.
func scanMembers(dst []member, raw []byte) (ms []member, ok bool) {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return dst, false
	}
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return dst, true
	}
	ms = dst
	for i < len(raw) {
		// A key: raw is valid, so raw[i] is '"'.
		end := i + 1
		for end < len(raw) && raw[end] != '"' {
			if raw[end] == '\\' {
				return dst, false
			}
			end++
		}
		key := raw[i+1 : end]
		if !utf8.Valid(key) {
			return dst, false
		}
		i = skipSpace(raw, end+1) + 1 // past ':'
		i = skipSpace(raw, i)
		vend := valueEnd(raw, i)
		ms = append(ms, member{key: key, val: raw[i:vend]})
		i = skipSpace(raw, vend)
		if i >= len(raw) || raw[i] == '}' {
			break
		}
		i = skipSpace(raw, i+1) // past ','
	}
	return ms, true
}

// valueEnd returns the end of the JSON value starting at raw[i] (raw is
// valid, or at least well nested): past its closing quote or bracket, or
// at the first byte after a number or literal (whitespace, ',', or the
// enclosing '}' or ']').
func valueEnd[T ~string | ~[]byte](raw T, i int) int {
	depth := 0
	for j := i; j < len(raw); j++ {
		switch c := raw[j]; c {
		case '"':
			j++
			for j < len(raw) && raw[j] != '"' {
				if raw[j] == '\\' {
					j++
				}
				j++
			}
			if depth == 0 {
				return min(j+1, len(raw)) // an unterminated string ends raw
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return j // the end of the enclosing object
			}
			depth--
			if depth == 0 {
				return j + 1
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return j
			}
		}
	}
	return len(raw)
}

func skipSpace(raw []byte, i int) int {
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\n' || raw[i] == '\r') {
		i++
	}
	return i
}

// sortMembers sorts ms by key and keeps the last member of each key
// (the order of equal keys is kept: the sort is stable).
func sortMembers(ms []member) []member {
	if len(ms) < 2 {
		return ms
	}
	slices.SortStableFunc(ms, func(a, b member) int { return bytes.Compare(a.key, b.key) })
	n := 0
	for i := range ms {
		if n > 0 && bytes.Equal(ms[n-1].key, ms[i].key) {
			ms[n-1].val = ms[i].val
			continue
		}
		ms[n] = ms[i]
		n++
	}
	return ms[:n]
}

// decodedMembers is splitMembers through encoding/json.
func decodedMembers(dst []member, raw json.RawMessage) ([]member, error) {
	keys, vals, err := splitObjectDecoded(raw)
	if err != nil {
		return dst, err
	}
	for i, k := range keys {
		dst = append(dst, member{key: []byte(k), val: vals[i]})
	}
	return dst, nil
}

// splitObjectDecoded splits JSON object raw through encoding/json into
// its keys, sorted, and their values.
func splitObjectDecoded(raw json.RawMessage) ([]string, []json.RawMessage, error) {
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
	if plainASCII(s) { // the common case: nothing to escape
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

// plainASCII reports whether s is printable ASCII without '"' or '\\':
// its JSON string is s between quotes.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			return false
		}
	}
	return true
}

// jsonString returns s as a JSON string literal.
func jsonString(s string) string {
	if plainASCII(s) {
		return `"` + s + `"`
	}
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

// appendFlatObject encodes m as encoding/json would (keys sorted, no
// HTML escaping) when every key and value is of the common plain kinds: a
// string that needs no escape, a bool, nil, an integer or a finite
// float64. ok is false for anything else (nested values, escapes, other
// types): the caller then marshals m with encoding/json.
func appendFlatObject(b []byte, m map[string]any) ([]byte, bool) {
	var stack [16]string
	keys := stack[:0]
	for k := range m {
		if !plainJSONText(k) {
			return b, false
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, '"', ':')
		switch v := m[k].(type) {
		case nil:
			b = append(b, "null"...)
		case string:
			if !plainJSONText(v) {
				return b, false
			}
			b = append(b, '"')
			b = append(b, v...)
			b = append(b, '"')
		case bool:
			b = strconv.AppendBool(b, v)
		case int:
			b = strconv.AppendInt(b, int64(v), 10)
		case int64:
			b = strconv.AppendInt(b, v, 10)
		case int32:
			b = strconv.AppendInt(b, int64(v), 10)
		case uint64:
			b = strconv.AppendUint(b, v, 10)
		case uint:
			b = strconv.AppendUint(b, uint64(v), 10)
		case float64:
			if math.IsInf(v, 0) || math.IsNaN(v) {
				return b, false // encoding/json's error
			}
			b = appendJSONFloat(b, v)
		default:
			return b, false
		}
	}
	return append(b, '}'), true
}

// appendJSONFloat formats f as encoding/json does a float64.
func appendJSONFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// plainJSONText reports whether encoding/json (without HTML escaping)
// writes s between quotes unchanged: valid UTF-8 without control
// characters, quotes, backslashes, U+2028 or U+2029.
func plainJSONText(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == '"' || c == '\\' {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || r == '\u2028' || r == '\u2029' {
			return false
		}
		i += size
	}
	return true
}
