package taskflow

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Decoding what the scripts return and Redis holds: flow hashes, audit
// entries, steps.

// pairsToMap turns a script's field/value array into a map.
func pairsToMap(v any) map[string]string {
	fields, _ := v.([]any)
	m := make(map[string]string, len(fields)/2)
	for i := 0; i+1 < len(fields); i += 2 {
		k, _ := fields[i].(string)
		val, _ := fields[i+1].(string)
		m[k] = val
	}
	return m
}

// decodeFlow builds the Flow id from its hash: the record fields, and the
// state as "$<key>" fields (or "state" when it is not an object). A lean
// reply has no state: State stays nil.
func decodeFlow(id uuid.UUID, m map[string]string, withState bool) (*Flow, error) {
	f, err := flowFromRecord(id, func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	})
	if err != nil {
		return nil, err
	}
	for k, v := range m {
		if strings.HasPrefix(k, attrFieldPrefix) {
			if f.Attributes == nil {
				f.Attributes = make(map[string]string, 2)
			}
			f.Attributes[k[len(attrFieldPrefix):]] = v
		}
	}
	if !withState {
		return f, nil
	}
	if raw, ok := m["state"]; ok && m["raw"] == "1" {
		f.State = json.RawMessage(raw)
		return f, nil
	}
	var keys []string
	var vals [][]byte
	for k, v := range m {
		if strings.HasPrefix(k, "$") {
			keys = append(keys, k[1:])
			vals = append(vals, []byte(v))
		}
	}
	f.State = joinObject(keys, vals)
	return f, nil
}

// flowFromRecord builds the Flow id from its record fields
// (recordFields), read with field: a field's value, and whether the flow
// has it.
func flowFromRecord(id uuid.UUID, field func(name string) (string, bool)) (*Flow, error) {
	get := func(name string) string {
		v, _ := field(name)
		return v
	}
	st, err := ParseFlowStatus(get("status"))
	if err != nil {
		return nil, fmt.Errorf("flow %s: %w", id, err)
	}
	f := &Flow{
		ID:              id,
		ControllerID:    get("controller"),
		Goal:            get("goal"),
		OwnerSessionKey: get("owner"),
		RequesterOrigin: get("origin"),
		CurrentStep:     get("step"),
		Status:          st,
		CancelRequested: get("cancel") == "1",
		TraceParent:     get("tp"),
	}
	f.Revision, _ = strconv.ParseInt(get("rev"), 10, 64)
	f.Epoch = get("ep")
	if att := get("att"); att != "" { // absent until a retry: no parse error to make
		f.Attempts, _ = strconv.Atoi(att)
	}
	if p := get("parent"); p != "" {
		f.ParentID, _ = uuid.Parse(p)
		f.ChildKey = get("ckey")
	}
	if k := get("kids"); k != "" {
		f.Children, _ = strconv.Atoi(k)
	}
	f.Concurrency, f.Priority = parseGateField(get("gk"))
	f.CreatedAt = msTime(get("created"))
	f.UpdatedAt = msTime(get("updated"))
	if w, ok := field("wait"); ok {
		f.Wait = json.RawMessage(w)
	}
	return f, nil
}

// decodeRecord builds the Flow id from a record packed by
// lua/include/record.lua pack_record (a lean reply): recordFields' values
// in order, each '<length>:<bytes>' or '-' when absent. It reads them in
// place, without the map decodeFlow takes; the values share packed's
// memory. A malformed string yields the fields read before the fault
// (flowFromRecord then refuses what is missing). A record holds no
// attributes and no state: withState makes the state the empty object,
// as decodeFlow does for a hash without state fields.
func decodeRecord(id uuid.UUID, packed string, withState bool) (*Flow, error) {
	var vals [len(recordFields)]string
	var has [len(recordFields)]bool
	rest := packed
	for i := range recordFields {
		if rest == "" {
			break
		}
		if rest[0] == '-' {
			rest = rest[1:]
			continue
		}
		colon := strings.IndexByte(rest, ':')
		if colon <= 0 {
			break
		}
		n, err := strconv.Atoi(rest[:colon])
		if err != nil || n < 0 || colon+1+n > len(rest) {
			break
		}
		vals[i], has[i] = rest[colon+1:colon+1+n], true
		rest = rest[colon+1+n:]
	}
	f, err := flowFromRecord(id, func(name string) (string, bool) {
		for i := range recordFields {
			if recordFields[i] == name {
				return vals[i], has[i]
			}
		}
		return "", false
	})
	if err != nil {
		return nil, err
	}
	if withState {
		f.State = joinObject(nil, nil)
	}
	return f, nil
}

func msTime(s string) time.Time {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// An audit entry as kept in Redis is kept short, because a flow space
// holds millions: a JSON array with no key names,
//
//	[<kind>,<rev>,<at>,<payload>]          or, under a lease,
//	[<kind>,<rev>,<at>,<payload>,"<lease>"]
//
// where at is unix milliseconds; its id is not stored (the flow's seq is
// the newest entry's id). Flow spaces written before this form kept an
// object, storedEvent, which decodeEvent still reads.

// storedEvent is the older, object form of an audit entry.
type storedEvent struct {
	Kind     EventKind       `json:"kind"`
	Revision int64           `json:"rev"`
	At       int64           `json:"at"`
	Lease    string          `json:"lease"`
	Payload  json.RawMessage `json:"payload"`
}

// decodeEvent reads a stored audit entry of either form as event id of
// flowID.
func decodeEvent(flowID uuid.UUID, id int64, entry string) (*FlowEvent, error) {
	var se storedEvent
	var err error
	if strings.HasPrefix(entry, "[") {
		se, err = decodeCompactEvent(entry)
	} else {
		err = json.Unmarshal([]byte(entry), &se)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: stored event of flow %s: %v", ErrInvalidData, flowID, err)
	}
	return &FlowEvent{
		ID: strconv.FormatInt(id, 10), FlowID: flowID, Kind: se.Kind, Revision: se.Revision,
		Lease: se.Lease, Payload: se.Payload, At: time.UnixMilli(se.At).UTC(),
	}, nil
}

// decodeCompactEvent reads the array form of an audit entry. It scans the
// entry itself rather than through encoding/json (a mutation's reply
// decodes one on the hot path); the payload is checked with json.Valid.
func decodeCompactEvent(entry string) (storedEvent, error) {
	var se storedEvent
	kind, i, err := jsonStringAt(entry, 1)
	if err != nil {
		return se, fmt.Errorf("kind: %v", err)
	}
	se.Kind = EventKind(kind)
	if i >= len(entry) || entry[i] != ',' {
		return se, fmt.Errorf("no ',' after the kind")
	}
	if se.Revision, i, err = jsonIntAt(entry, i+1); err != nil {
		return se, fmt.Errorf("rev: %v", err)
	}
	if se.At, i, err = jsonIntAt(entry, i+1); err != nil {
		return se, fmt.Errorf("at: %v", err)
	}
	end := valueEnd(entry, i+1) // the entries the scripts write hold no whitespace
	payload := []byte(entry[i+1 : end])
	if !json.Valid(payload) {
		return se, fmt.Errorf("payload: not JSON")
	}
	se.Payload = payload
	i = end
	if i < len(entry) && entry[i] == ',' {
		if se.Lease, i, err = jsonStringAt(entry, i+1); err != nil {
			return se, fmt.Errorf("lease: %v", err)
		}
	}
	if i != len(entry)-1 || entry[i] != ']' {
		return se, fmt.Errorf("not an entry of 4 or 5 parts")
	}
	return se, nil
}

// jsonStringAt reads the JSON string starting at s[i] and returns it and
// the index just past it; one with escapes or other than ASCII goes
// through encoding/json.
func jsonStringAt(s string, i int) (string, int, error) {
	if i >= len(s) || s[i] != '"' {
		return "", i, fmt.Errorf("not a string")
	}
	escaped := false
	for j := i + 1; j < len(s); j++ {
		switch c := s[j]; {
		case c == '\\':
			escaped = true
			j++
		case c < 0x20:
			return "", i, fmt.Errorf("a control character in a string")
		case c >= 0x80: // not ASCII: encoding/json checks the UTF-8
			escaped = true
		case c == '"':
			if !escaped {
				return s[i+1 : j], j + 1, nil
			}
			var out string
			if err := json.Unmarshal([]byte(s[i:j+1]), &out); err != nil {
				return "", i, err
			}
			return out, j + 1, nil
		}
	}
	return "", i, fmt.Errorf("an unterminated string")
}

// jsonIntAt reads the integer (JSON's form of one) starting at s[i],
// which a ',' must follow, and returns it and the index of the ','.
func jsonIntAt(s string, i int) (int64, int, error) {
	j := strings.IndexByte(s[min(i, len(s)):], ',')
	if j < 0 {
		return 0, i, fmt.Errorf("no ',' after the number")
	}
	num := s[i : i+j]
	digits := strings.TrimPrefix(num, "-")
	if digits == "" || digits[0] < '0' || digits[0] > '9' || (digits[0] == '0' && len(digits) > 1) {
		return 0, i, fmt.Errorf("%q is not an integer", num)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	return n, i + j, err
}

// decodeNumbered reads "<event id> <entry>".
func decodeNumbered(flowID uuid.UUID, s string) (*FlowEvent, error) {
	idStr, entry, _ := strings.Cut(s, " ")
	id, err := strconv.ParseInt(idStr, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: event of flow %s without an id", ErrInvalidData, flowID)
	}
	return decodeEvent(flowID, id, entry)
}

func decodeStep(v any) (*FlowStep, error) {
	fields, _ := v.([]any)
	m := make(map[string]string, len(fields)/2)
	for i := 0; i+1 < len(fields); i += 2 {
		k, _ := fields[i].(string)
		val, _ := fields[i+1].(string)
		m[k] = val
	}
	id, err := uuid.Parse(m["id"])
	if err != nil {
		return nil, fmt.Errorf("%w: stored step has a bad id %q", ErrInvalidData, m["id"])
	}
	flowID, _ := uuid.Parse(m["flow_id"])
	st := &FlowStep{
		ID:              id,
		FlowID:          flowID,
		Runtime:         StepRuntime(m["runtime"]),
		ChildSessionKey: m["child_session_key"],
		RunID:           m["run_id"],
		Task:            m["task"],
		Status:          StepStatus(m["status"]),
		CreatedAt:       msTime(m["created"]),
		UpdatedAt:       msTime(m["updated"]),
	}
	if r, ok := m["result_json"]; ok {
		st.Result = json.RawMessage(r)
	}
	return st, nil
}

func decodeReply(id uuid.UUID, v any) (*Flow, error) {
	arr, ok := v.([]any)
	if !ok || len(arr) < 2 {
		return nil, fmt.Errorf("taskflow: unexpected script reply %T", v)
	}
	return decodeFlowReply(id, arr, false)
}

// decodeFlowReply decodes the flow of a {flow, extra} script reply: its
// hash as field/value pairs, or with a lean reply ({values, extra,
// 'record'}) the values of recordFields, packed or in order.
func decodeFlowReply(id uuid.UUID, arr []any, withState bool) (*Flow, error) {
	if len(arr) > 2 && arr[2] == "record" {
		if packed, ok := arr[0].(string); ok {
			return decodeRecord(id, packed, withState)
		}
		vals, _ := arr[0].([]any)
		m := make(map[string]string, len(recordFields))
		for i, name := range recordFields {
			if i < len(vals) {
				if v, ok := vals[i].(string); ok {
					m[name] = v
				}
			}
		}
		return decodeFlow(id, m, withState)
	}
	return decodeFlow(id, pairsToMap(arr[0]), withState)
}

// decodeTaken decodes a flow a take leased (lua/include/take.lua) as a
// reply carries it: its id, its fields (hash pairs, or a record packed
// when mode is 'record') and the reply mode.
func decodeTaken(id, fields, mode any) (*Flow, error) {
	fid, err := uuid.Parse(fmt.Sprint(id))
	if err != nil {
		return nil, fmt.Errorf("taskflow: the id %v of a leased flow: %w", id, err)
	}
	return decodeFlowReply(fid, []any{fields, "", mode}, mode != "record")
}

// parseGateField reads a gate field (decodeFlow; gate.go gateField writes it).
func parseGateField(gk string) (keys []string, priority int) {
	if gk == "" {
		return nil, 0
	}
	parts := strings.Split(gk, "\n")
	priority, _ = strconv.Atoi(parts[0])
	for _, k := range parts[1:] {
		if k != "" {
			keys = append(keys, k)
		}
	}
	return keys, priority
}
