// Package plainjson encodes JSON as the taskflow library stores it: text
// as written, without the HTML escaping of encoding/json ('<', '>' and
// '&' are not turned into \u003c, \u003e, \u0026). The CLI's --json, the
// dashboard's event stream and /api/stats, and the MCP server's
// resources, the library's stored values and the agent tool's results use it, so every surface shows a value as redis-cli does.
// JSON that ends up inside an HTML page goes through html/template's own
// escaping instead.
package plainjson

import (
	"bytes"
	"encoding/json"
	"io"
)

// Marshal is json.Marshal without HTML escaping.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := Encode(&buf, v, false); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Encode writes v to w as one JSON value and a newline, indented by two
// spaces when indent is set, without HTML escaping.
func Encode(w io.Writer, v any, indent bool) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if indent {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(v)
}
