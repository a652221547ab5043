package taskflow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// WaitKind names what a waiting flow waits for.
type WaitKind string

// The wait kinds a WaitEngine understands.
const (
	// WaitKindTimer resumes on the engine's first tick at or after At.
	WaitKindTimer WaitKind = "timer"
	// WaitKindExternalEvent resumes on an event with the same Topic and
	// CorrelationID (Manager.TryResumeExternal, the resume bridge).
	WaitKindExternalEvent WaitKind = "external_event"
	// WaitKindManual resumes only on an explicit Manager.Resume.
	WaitKindManual WaitKind = "manual"
	// WaitKindChildren resumes when the flow's children meet its join
	// (WaitChildren): enough of them finished, one failed under
	// FailFast, every one ended, or the deadline At passed.
	WaitKindChildren WaitKind = "children"
)

// WaitCondition is what a waiting flow is blocked on. It marshals to the
// wait_json of the contract:
//
//	{"kind":"timer","at":"<RFC 3339>"}
//	{"kind":"external_event","topic":"…","correlation_id":"…"}
//	{"kind":"manual"}
//	{"kind":"children","need":<n>,"fail_fast":true,"at":"<RFC 3339>"}
//
// (need, fail_fast and at of a children wait are written only when set).
type WaitCondition struct {
	Kind WaitKind
	// At is a timer's time, or a children wait's deadline (zero: none).
	At            time.Time
	Topic         string
	CorrelationID string
	// Need and FailFast are a children wait's join (see Join).
	Need     int
	FailFast bool
}

// Join is how a parent waits on its children (WaitChildren): the
// parent resumes, with the join's summary merged into its state under
// "children" (see Manager.StartChild), at the first of
//
//   - Need of its children finished (status finished); Need 0 means all
//     of them, as many as were started when a child ends: all of M is
//     Need 0, any is Need 1, N of M is Need N;
//   - with FailFast, a child failed or was cancelled;
//   - every child ended, whether or not Need were met;
//   - Deadline, when not zero, passed (the engine's tick resumes it).
//
// A join already met when the parent starts waiting resumes it at once,
// in the same call (a transition: SetWaiting; RedisStore.UpdateAndAppend,
// the store-level write, stores the wait as given, and the join is next
// evaluated when a child ends).
type Join struct {
	Need     int
	FailFast bool
	Deadline time.Time
}

// WaitChildren waits on the flow's children as j says.
func WaitChildren(j Join) WaitCondition {
	return WaitCondition{Kind: WaitKindChildren, Need: j.Need, FailFast: j.FailFast, At: j.Deadline}
}

// WaitTimer waits until at.
func WaitTimer(at time.Time) WaitCondition { return WaitCondition{Kind: WaitKindTimer, At: at} }

// WaitExternalEvent waits for an event of topic with correlationID.
func WaitExternalEvent(topic, correlationID string) WaitCondition {
	return WaitCondition{Kind: WaitKindExternalEvent, Topic: topic, CorrelationID: correlationID}
}

// WaitManual waits for an explicit resume.
func WaitManual() WaitCondition { return WaitCondition{Kind: WaitKindManual} }

type waitJSON struct {
	Kind          WaitKind `json:"kind"`
	Need          int      `json:"need,omitempty"`
	FailFast      bool     `json:"fail_fast,omitempty"`
	At            *string  `json:"at,omitempty"`
	Topic         *string  `json:"topic,omitempty"`
	CorrelationID *string  `json:"correlation_id,omitempty"`
}

// Validate reports what is wrong with the condition, wrapping
// ErrInvalidData: an unknown kind, a timer without a time, an external
// event with an empty topic or correlation id.
func (w WaitCondition) Validate() error {
	switch w.Kind {
	case WaitKindTimer:
		if w.At.IsZero() {
			return fmt.Errorf("%w: a timer wait needs a time (at)", ErrInvalidData)
		}
	case WaitKindExternalEvent:
		if err := checkText("the topic", w.Topic, "the correlation_id", w.CorrelationID); err != nil {
			return err
		}
		if strings.TrimSpace(w.Topic) == "" {
			return fmt.Errorf("%w: an external_event wait needs a non-empty topic", ErrInvalidData)
		}
		if strings.TrimSpace(w.CorrelationID) == "" {
			return fmt.Errorf("%w: an external_event wait needs a non-empty correlation_id", ErrInvalidData)
		}
	case WaitKindManual:
	case WaitKindChildren:
		if w.Need < 0 || w.Need > maxChildrenLimit {
			return fmt.Errorf("%w: a children wait needs 0 (all) to %d children, not %d", ErrInvalidData, maxChildrenLimit, w.Need)
		}
	default:
		return fmt.Errorf("%w: unknown wait kind %q (want timer, external_event, manual or children)", ErrInvalidData, w.Kind)
	}
	return nil
}

// MarshalJSON writes exactly the contract's JSON for the kind.
func (w WaitCondition) MarshalJSON() ([]byte, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	out := waitJSON{Kind: w.Kind}
	switch w.Kind {
	case WaitKindTimer:
		at := w.At.UTC().Format(time.RFC3339Nano)
		out.At = &at
	case WaitKindExternalEvent:
		out.Topic, out.CorrelationID = &w.Topic, &w.CorrelationID
	case WaitKindChildren:
		out.Need, out.FailFast = w.Need, w.FailFast
		if !w.At.IsZero() {
			at := w.At.UTC().Format(time.RFC3339Nano)
			out.At = &at
		}
	}
	return marshalJSON(out)
}

// UnmarshalJSON reads the contract's JSON; see ParseWaitCondition.
func (w *WaitCondition) UnmarshalJSON(b []byte) error {
	c, err := ParseWaitCondition(b)
	if err != nil {
		return err
	}
	*w = c
	return nil
}

// ParseWaitCondition reads a wait_json. A malformed document, an unknown
// kind, an unparsable timer or an empty topic or correlation id is an
// error wrapping ErrInvalidData.
func ParseWaitCondition(raw json.RawMessage) (WaitCondition, error) {
	if !isObject(bytes.TrimSpace(raw)) {
		return WaitCondition{}, fmt.Errorf("%w: a wait condition must be a JSON object", ErrInvalidData)
	}
	if hasLoneSurrogate(raw) {
		return WaitCondition{}, fmt.Errorf("%w: a wait condition holds a lone UTF-16 surrogate escape (\\ud800-\\udfff without its pair)", ErrInvalidData)
	}
	var in waitJSON
	if err := json.Unmarshal(raw, &in); err != nil {
		return WaitCondition{}, fmt.Errorf("%w: malformed wait condition: %v", ErrInvalidData, err)
	}
	w := WaitCondition{Kind: in.Kind}
	switch in.Kind {
	case WaitKindTimer:
		if in.At == nil {
			return WaitCondition{}, fmt.Errorf("%w: a timer wait needs \"at\" (RFC 3339)", ErrInvalidData)
		}
		at, err := time.Parse(time.RFC3339Nano, *in.At)
		if err != nil {
			return WaitCondition{}, fmt.Errorf("%w: timer \"at\" %q is not an RFC 3339 time", ErrInvalidData, *in.At)
		}
		w.At = at
	case WaitKindExternalEvent:
		if in.Topic != nil {
			w.Topic = *in.Topic
		}
		if in.CorrelationID != nil {
			w.CorrelationID = *in.CorrelationID
		}
	case WaitKindChildren:
		w.Need, w.FailFast = in.Need, in.FailFast
		if in.At != nil {
			at, err := time.Parse(time.RFC3339Nano, *in.At)
			if err != nil {
				return WaitCondition{}, fmt.Errorf("%w: children wait \"at\" %q is not an RFC 3339 time", ErrInvalidData, *in.At)
			}
			w.At = at
		}
	}
	if err := w.Validate(); err != nil {
		return WaitCondition{}, err
	}
	return w, nil
}

// maxWaitBytes caps the size of a wait condition's JSON as stored: it is
// kept in the flow record and repeated in the waiting event.
const maxWaitBytes = 64 << 10

// waitFromAny turns SetWaiting's argument into a validated wait_json and
// its index entries. A json.RawMessage or []byte is kept as given (less
// surrounding white space); a WaitCondition is its contract JSON; any
// other value is marshalled.
func waitFromAny(id uuid.UUID, wait any) (waitArgs, error) {
	var raw json.RawMessage
	switch w := wait.(type) {
	case WaitCondition:
		b, err := marshalJSON(w)
		if err != nil {
			return waitArgs{}, unwrapMarshal(err)
		}
		raw = b
	case *WaitCondition:
		if w == nil {
			return waitArgs{}, fmt.Errorf("%w: a wait condition is required", ErrInvalidData)
		}
		return waitFromAny(id, *w)
	case json.RawMessage:
		raw = w
	case []byte:
		raw = w
	default:
		r, err := toJSON("wait condition", wait)
		if err != nil {
			return waitArgs{}, err
		}
		raw = r
	}
	if raw == nil || string(bytes.TrimSpace(raw)) == "null" {
		return waitArgs{}, fmt.Errorf("%w: a wait condition is required", ErrInvalidData)
	}
	return waitIndexArgs(id, raw)
}

// storedWait is what the engine reads from a stored wait_json: the kind,
// and the fields its index needs. Other fields are the caller's.
type storedWait struct {
	Kind          string  `json:"kind"`
	At            *string `json:"at"`
	Topic         *string `json:"topic"`
	CorrelationID *string `json:"correlation_id"`
}

// parseStoredWait reads a wait_json as the engine sees it. Unlike
// ParseWaitCondition it accepts any non-empty kind: a kind the engine
// does not know is a manual wait (only an explicit resume ends it). A
// timer needs an RFC 3339 "at"; an external event a non-empty topic and
// correlation id.
func parseStoredWait(raw json.RawMessage) (WaitCondition, error) {
	if !isObject(bytes.TrimSpace(raw)) {
		return WaitCondition{}, fmt.Errorf("%w: a wait condition must be a JSON object", ErrInvalidData)
	}
	var in storedWait
	if err := json.Unmarshal(raw, &in); err != nil {
		return WaitCondition{}, fmt.Errorf("%w: malformed wait condition: %v", ErrInvalidData, err)
	}
	switch WaitKind(in.Kind) {
	case WaitKindTimer, WaitKindExternalEvent, WaitKindManual, WaitKindChildren:
		return ParseWaitCondition(raw)
	case "":
		return WaitCondition{}, fmt.Errorf("%w: a wait condition needs a non-empty \"kind\"", ErrInvalidData)
	}
	return WaitCondition{Kind: WaitKind(in.Kind)}, nil
}

// waitIndexArgs validates a wait_json and computes its index entries: the
// timer deadline or the correlation member. The JSON is stored as given
// (surrounding white space aside), extra fields and the timer's time zone
// included: the engine reads only what it indexes.
func waitIndexArgs(id uuid.UUID, raw json.RawMessage) (waitArgs, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > maxWaitBytes {
		return waitArgs{}, fmt.Errorf("%w: wait condition is %d bytes, over the limit of %d", ErrInvalidData, len(raw), maxWaitBytes)
	}
	if !json.Valid(raw) {
		return waitArgs{}, fmt.Errorf("%w: wait condition is not valid JSON", ErrInvalidData)
	}
	if !utf8.Valid(raw) {
		return waitArgs{}, fmt.Errorf("%w: wait condition is not valid UTF-8", ErrInvalidData)
	}
	w, err := parseStoredWait(raw)
	if err != nil {
		return waitArgs{}, err
	}
	out := waitArgs{json: string(raw)}
	switch w.Kind {
	case WaitKindTimer:
		out.timerMs = strconv.FormatInt(w.At.UnixMilli(), 10)
	case WaitKindChildren:
		// Stored in its canonical form: the scripts know a children wait
		// by its opening (lua/include/children.lua is_join).
		b, err := marshalJSON(w)
		if err != nil {
			return waitArgs{}, unwrapMarshal(err)
		}
		out.json = string(b)
		if !w.At.IsZero() {
			out.timerMs = strconv.FormatInt(w.At.UnixMilli(), 10)
		}
	case WaitKindExternalEvent:
		out.corr = corrMember(w.Topic, w.CorrelationID, id)
		out.topic, out.correlationID = w.Topic, w.CorrelationID
	}
	return out, nil
}

// unwrapMarshal digs ErrInvalidData out of a json.Marshal error.
func unwrapMarshal(err error) error {
	return fmt.Errorf("%w: %v", ErrInvalidData, err)
}

// waitArgs are the index entries of a wait: ARGV 10..12 of transition.lua.
type waitArgs struct {
	json    string
	timerMs string
	corr    string
	// topic and correlationID of an external-event wait, for the
	// store's label bounds (checkWaitLabels).
	topic, correlationID string
}
