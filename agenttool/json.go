package agenttool

import (
	"bytes"
	"encoding/json"
)

// marshalJSON is json.Marshal without HTML escaping, as the taskflow
// package encodes: a flow's state and the tool's schemas come back to the
// model with '<', '>' and '&' as written, and json.RawMessage values keep
// their bytes.
func marshalJSON(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
