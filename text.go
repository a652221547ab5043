package taskflow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

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
