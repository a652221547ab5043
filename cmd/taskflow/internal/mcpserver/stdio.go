package mcpserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// MaxFrameBytes bounds one message on the stdio transport: a line longer
// than this (16 MiB, the SDK's own bound) is refused with an error reply
// and skipped, never buffered whole.
const MaxFrameBytes = mcp.DefaultMaxLineLength

// MaxFrameDepth bounds how deeply a message's JSON may nest (objects and
// arrays, arguments included): deeper messages are refused as a parse
// error before anything decodes them.
const MaxFrameDepth = 512

// lineTransport is the stdio transport: newline-delimited JSON-RPC
// messages, as the SDK's StdioTransport reads them, except that a line
// that is no valid JSON-RPC 2.0 message is answered with a JSON-RPC error
// (-32700 for what is not JSON, -32600 for JSON that is no request,
// notification or response, and for a batch) and the connection carries
// on. The SDK's own transport ends the connection, and with it `taskflow
// mcp`, at the first such line.
type lineTransport struct {
	r   io.ReadCloser
	w   io.WriteCloser
	max int // bytes per frame
}

// Connect implements mcp.Transport.
func (t *lineTransport) Connect(context.Context) (mcp.Connection, error) {
	c := &lineConn{
		r: t.r, w: t.w, max: t.max,
		incoming: make(chan jsonrpc.Message),
		readErr:  make(chan error, 1),
		closed:   make(chan struct{}),
	}
	go c.readLoop()
	return c, nil
}

// lineConn is one stdio connection.
type lineConn struct {
	r   io.ReadCloser
	w   io.WriteCloser
	max int

	incoming chan jsonrpc.Message
	readErr  chan error // the error that ended the read loop (io.EOF at the end of input)

	writeMu sync.Mutex

	closeOnce sync.Once
	closed    chan struct{}
	closeErr  error
}

// readLoop reads lines until the input ends, handing valid messages to
// Read and answering invalid ones itself.
func (c *lineConn) readLoop() {
	br := bufio.NewReaderSize(c.r, 64<<10)
	for {
		line, err := readLine(br, c.max)
		switch {
		case errors.Is(err, errFrameTooLarge):
			c.refuse(nil, jsonrpc.CodeInvalidRequest, fmt.Sprintf("message larger than %d bytes", c.max))
			continue
		case err != nil && len(line) == 0:
			c.readErr <- err
			return
		}
		if msg := c.decode(line); msg != nil {
			select {
			case c.incoming <- msg:
			case <-c.closed:
				return
			}
		}
		if err != nil { // a last line without a newline
			c.readErr <- err
			return
		}
	}
}

var errFrameTooLarge = errors.New("frame too large")

// readLine returns the next line without its line ending. A line longer
// than max is read to its end and dropped: errFrameTooLarge. At the end
// of input the last unterminated line comes with the reader's error.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	tooLarge := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLarge {
			if len(line)+len(chunk) > max+2 { // room for "\r\n"
				tooLarge, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if tooLarge {
			if err != nil {
				return nil, err
			}
			return nil, errFrameTooLarge
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) > max {
			return nil, errFrameTooLarge
		}
		return line, err
	}
}

// frame is a JSON-RPC 2.0 message's members, undecoded.
type frame struct {
	JSONRPC *string         `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  json.RawMessage `json:"method"`
	Params  json.RawMessage `json:"params"`
	Result  json.RawMessage `json:"result"`
	Error   json.RawMessage `json:"error"`
}

// decode returns the message of a line, or nil after answering a line
// that is none (and for a blank line, which is skipped).
func (c *lineConn) decode(line []byte) jsonrpc.Message {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil
	}
	if !utf8.Valid(line) {
		c.refuse(nil, jsonrpc.CodeParseError, "parse error: the message is not valid UTF-8")
		return nil
	}
	if !json.Valid(line) {
		c.refuse(nil, jsonrpc.CodeParseError, "parse error: the message is not valid JSON")
		return nil
	}
	if depth(line) > MaxFrameDepth {
		c.refuse(nil, jsonrpc.CodeParseError, fmt.Sprintf("parse error: the message nests deeper than %d levels", MaxFrameDepth))
		return nil
	}
	switch line[0] {
	case '{':
	case '[':
		c.refuse(nil, jsonrpc.CodeInvalidRequest, "invalid request: batches are not supported; send one message per line")
		return nil
	default:
		c.refuse(nil, jsonrpc.CodeInvalidRequest, "invalid request: a message is a JSON object")
		return nil
	}
	var f frame
	if err := json.Unmarshal(line, &f); err != nil {
		c.refuse(nil, jsonrpc.CodeInvalidRequest, "invalid request: "+err.Error())
		return nil
	}
	id, idOK := frameID(f.ID)
	replyID := id
	if !idOK {
		replyID = nil
	}
	isNull := func(r json.RawMessage) bool { return len(r) == 0 || string(r) == "null" }
	switch {
	case f.JSONRPC == nil || *f.JSONRPC != "2.0":
		c.refuse(replyID, jsonrpc.CodeInvalidRequest, `invalid request: "jsonrpc" must be "2.0"`)
		return nil
	case f.ID != nil && !idOK:
		c.refuse(nil, jsonrpc.CodeInvalidRequest, `invalid request: "id" must be a string or an integer`)
		return nil
	case f.Method != nil:
		var method string
		if err := json.Unmarshal(f.Method, &method); err != nil || method == "" {
			c.refuse(replyID, jsonrpc.CodeInvalidRequest, `invalid request: "method" must be a non-empty string`)
			return nil
		}
		if !isNull(f.Params) && f.Params[0] != '{' && f.Params[0] != '[' {
			c.refuse(replyID, jsonrpc.CodeInvalidRequest, `invalid request: "params" must be an object`)
			return nil
		}
	case f.ID == nil:
		c.refuse(nil, jsonrpc.CodeInvalidRequest, `invalid request: neither "method" nor "id"`)
		return nil
	case (f.Result != nil) == !isNull(f.Error):
		// A response has exactly one of result (null is a result) and
		// error.
		c.refuse(nil, jsonrpc.CodeInvalidRequest, `invalid response: it needs exactly one of "result" and "error"`)
		return nil
	}
	msg, err := jsonrpc.DecodeMessage(line)
	if err != nil {
		c.refuse(replyID, jsonrpc.CodeInvalidRequest, "invalid request: "+err.Error())
		return nil
	}
	if req, ok := msg.(*jsonrpc.Request); ok && req.Method != "" && !req.IsCall() && f.ID != nil {
		// Defensive: an id that decoded to no id would turn a call into a
		// notification nobody answers.
		c.refuse(replyID, jsonrpc.CodeInvalidRequest, `invalid request: bad "id"`)
		return nil
	}
	return msg
}

// frameID returns the id of a message as its JSON (nil when absent) and
// whether it is one JSON-RPC allows here: a string or an integer. A null
// id, which JSON-RPC discourages and MCP forbids, is refused.
func frameID(raw json.RawMessage) (json.RawMessage, bool) {
	if raw == nil {
		return nil, true
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, false
	}
	switch v := v.(type) {
	case string:
		return raw, true
	case json.Number:
		if _, err := v.Int64(); err != nil {
			return nil, false
		}
		return raw, true
	}
	return nil, false
}

// depth returns how deeply valid JSON nests, counting brackets outside
// strings.
func depth(b []byte) int {
	d, most, inString, escaped := 0, 0, false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			d++
			most = max(most, d)
		case c == '}' || c == ']':
			d--
		}
	}
	return most
}

// errorReply is a JSON-RPC error response.
type errorReply struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   struct {
		Code    int64  `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// refuse answers a line that is no message: id is the line's own id when
// it could be read, else null.
func (c *lineConn) refuse(id json.RawMessage, code int64, message string) {
	r := errorReply{JSONRPC: "2.0", ID: id}
	if r.ID == nil {
		r.ID = json.RawMessage("null")
	}
	r.Error.Code, r.Error.Message = code, message
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	_ = c.writeLine(b)
}

func (c *lineConn) writeLine(b []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	select {
	case <-c.closed:
		return io.ErrClosedPipe
	default:
	}
	_, err := c.w.Write(append(b, '\n'))
	return err
}

// Read implements mcp.Connection.
func (c *lineConn) Read(ctx context.Context) (jsonrpc.Message, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case msg := <-c.incoming:
		return msg, nil
	case err := <-c.readErr:
		c.readErr <- err // every later Read sees it too
		return nil, err
	case <-c.closed:
		return nil, io.EOF
	}
}

// Write implements mcp.Connection.
func (c *lineConn) Write(ctx context.Context, msg jsonrpc.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := jsonrpc.EncodeMessage(msg)
	if err != nil {
		return fmt.Errorf("mcpserver: encoding a message: %w", err)
	}
	return c.writeLine(b)
}

// Close implements mcp.Connection: it closes both streams.
func (c *lineConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.closeErr = errors.Join(c.r.Close(), c.w.Close())
	})
	return c.closeErr
}

// SessionID implements mcp.Connection: stdio has no session id.
func (c *lineConn) SessionID() string { return "" }

// nopCloser is a writer whose Close does nothing: the process's stdout
// stays open when a connection ends.
type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
