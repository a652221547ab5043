package taskflow

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
	"unicode/utf8"
)

// The options of one mutation (MutationOption) and how a state change
// is handed to a script.

// mutation describes one flow-changing script run.
type mutation struct {
	expected *int64
	epoch    string // with expected: the epoch expected too (IfRevisionOf)
	lease    *Lease
	lean     bool
	audit    *auditNote // WithAudit, audit.go
	call     string     // the call id (WithCallID); a random one when unset
	callSet  bool
	internal bool // the call id is the library's own (bridge messages)
	slack    int  // bytes the state may exceed the cap by (Fail's failure object)
	next     *nextClaim
}

// nextClaim is WithNext's: where the next flow and lease go, and the
// next lease's duration.
type nextClaim struct {
	flow  **Flow
	lease **Lease
	d     time.Duration
}

// MutationOption adjusts one manager mutation.
type MutationOption func(*mutation)

// IfRevision makes a mutation a compare-and-set: it is refused with a
// *RevisionMismatchError (ErrRevisionMismatch) unless the flow is still at
// revision rev. Without it, mutations apply to whatever revision is
// current, atomically, and never conflict.
//
// A revision number alone can match other data after a failover that
// lost writes: the new master hands the lost revisions out again. Use
// IfRevisionOf with the flow you read to compare its Epoch too.
func IfRevision(rev int64) MutationOption {
	return func(m *mutation) { m.expected = &rev; m.epoch = "" }
}

// IfRevisionOf is IfRevision(f.Revision) that also compares f.Epoch,
// the name of the write that made that revision: a flow read before a
// failover that lost writes is refused (*RevisionMismatchError) even
// when the new master has reached the same revision number with other
// writes. A flow with no Epoch (written before epochs were kept)
// compares the revision only.
func IfRevisionOf(f *Flow) MutationOption {
	return func(m *mutation) {
		if f == nil {
			return
		}
		rev := f.Revision
		m.expected, m.epoch = &rev, f.Epoch
	}
}

// WithNext makes a transition that ends the caller's lease (Finish, Fail,
// SetWaiting, Cancel made WithLease) hand the same worker its next flow
// in the same script: the oldest ready flow of the flow's controller in
// the flow's shard, leased for d (at least 100 ms) as Claim would. The
// flow and its lease are stored in *next and *lease, both nil when that
// queue had none ready (Claim then looks in every shard) or the call
// failed; a worker that keeps busy so spends one round trip per flow:
//
//	f, l, err := m.Claim(ctx, controller, worker, time.Minute)
//	for f != nil && err == nil {
//		out := work(f)
//		_, err = m.Finish(ctx, f.ID, out, taskflow.WithLease(l),
//			taskflow.WithNext(&f, &l, time.Minute))
//	}
//
// A call re-sent after its reply was lost (by go-redis, or by the caller
// with the same WithCallID) is handed the same flow; a flow handed in a
// reply nobody read is claimed again once its lease expires. The next
// flow comes with its state, as Claim's does, also when the call is made
// WithoutState (which then trims only the reply's own flow: a worker
// that does not read the flow it finished saves its state's bytes).
// Other mutations refuse WithNext (ErrInvalidData), as does a call
// without WithLease.
func WithNext(next **Flow, lease **Lease, d time.Duration) MutationOption {
	return func(m *mutation) { m.next = &nextClaim{flow: next, lease: lease, d: d} }
}

// WithoutState makes a mutation return the flow without its state
// (Flow.State is nil): the reply then costs the same whatever the state's
// size. By default a mutation returns the whole flow as persisted. A flow
// handed over by WithNext still comes whole.
func WithoutState() MutationOption {
	return func(m *mutation) { m.lean = true }
}

// WithLease makes a mutation part of a worker's lease (see Manager.Claim):
// it is refused with ErrLeaseLost, writing nothing, once the lease expired,
// was released, or moved to another worker, so a worker that stalled
// cannot overwrite its successor's work. The audit event names the lease.
// A nil lease means none.
func WithLease(l *Lease) MutationOption {
	return func(m *mutation) { m.lease = l }
}

func applyMutationOptions(opts []MutationOption) mutation {
	var m mutation
	for _, o := range opts {
		if o != nil {
			o(&m)
		}
	}
	return m
}

// stateArgs renders a state change for apply_state: mode then data.
// merge says whether an object is merged (patch) or replaces (whole state).
func (s *RedisStore) stateArgs(what string, raw json.RawMessage, merge bool) ([]any, error) {
	var buf [stackMembers]member
	st, err := s.splitState(buf[:0], what, raw, merge)
	if err != nil {
		return nil, err
	}
	return st.appendArgs(make([]any, 0, st.argLen()), st.text()), nil
}

// stackMembers is how many members of a state change a caller's buffer
// on its stack holds (splitState): more are allocated.
const stackMembers = 16

// stateChange is a state change split for apply_state (splitState).
type stateChange struct {
	mode    stateMode
	whole   json.RawMessage // the state that replaces, when not an object
	members []member        // an object's members, sorted
}

// stateMode is how apply_state changes the state.
type stateMode uint8

const (
	stateNone stateMode = iota
	stateReplace
	stateObject
	stateMerge
)

// stateModeArgs are the modes as apply_state names them, boxed once:
// appendArgs takes them from here rather than from the stateChange,
// which then stays on its caller's stack with its members.
var stateModeArgs = [...]any{stateNone: "none", stateReplace: "replace", stateObject: "object", stateMerge: "merge"}

// splitState checks a state change and splits an object into its
// members, appended to buf: what names it in errors, merge says whether
// an object is merged (patch) or replaces (whole state). stateArgs
// renders it; a caller that sizes its arguments first calls appendArgs.
func (s *RedisStore) splitState(buf []member, what string, raw json.RawMessage, merge bool) (stateChange, error) {
	if raw == nil {
		return stateChange{mode: stateNone}, nil
	}
	if len(raw) > s.maxState {
		return stateChange{}, fmt.Errorf("%w: %s is %d bytes, over the limit of %d", ErrInvalidData, what, len(raw), s.maxState)
	}
	if !isObject(raw) {
		return stateChange{mode: stateReplace, whole: raw}, nil
	}
	ms, err := splitMembers(buf, raw)
	if err != nil {
		return stateChange{}, err
	}
	if len(ms) > s.limits.PatchKeys {
		return stateChange{}, fmt.Errorf("%w: %s has %d top-level keys, over the limit of %d", ErrInvalidData, what, len(ms), s.limits.PatchKeys)
	}
	st := stateChange{mode: stateObject, members: ms}
	if merge {
		st.mode = stateMerge
	}
	return st, nil
}

// argLen is how many arguments appendArgs appends.
func (st stateChange) argLen() int {
	if st.whole != nil {
		return 2
	}
	return 1 + 2*len(st.members)
}

// textLen is the length of the state change's text (writeText).
func (st stateChange) textLen() int {
	n := len(st.whole)
	for _, m := range st.members {
		n += 1 + len(m.key) + len(m.val)
	}
	return n
}

// writeText writes the text of the state change's arguments to b: the
// state that replaces, or each member's field ('$' and its key) and
// value. The arguments are cut from it (appendArgs): one allocation for
// them all rather than one each.
func (st stateChange) writeText(b *strings.Builder) {
	b.Write(st.whole)
	for _, m := range st.members {
		b.WriteByte('$')
		b.Write(m.key)
		b.Write(m.val)
	}
}

// text returns the state change's text (writeText).
func (st stateChange) text() string {
	var b strings.Builder
	b.Grow(st.textLen())
	st.writeText(&b)
	return b.String()
}

// appendArgs appends the state change's arguments to args, cut from text
// (its text, as writeText wrote it): the mode, then the state that
// replaces, or each member's field and value.
func (st stateChange) appendArgs(args []any, text string) []any {
	args = append(args, stateModeArgs[st.mode])
	if st.whole != nil {
		return append(args, text)
	}
	at := 0
	for _, m := range st.members {
		field := at + 1 + len(m.key)
		end := field + len(m.val)
		args = append(args, text[at:field], text[field:end])
		at = end
	}
	return args
}

func rawOrNull(raw json.RawMessage) string {
	if raw == nil {
		return "null"
	}
	return string(raw)
}

func stringOrNull(s string) string {
	if s == "" {
		return "null"
	}
	return jsonString(s)
}

// maxAuditText is the longest actor or reason WithAudit accepts, in bytes.
const maxAuditText = 1024

// auditNote is who made a mutation and why (see WithAudit).
type auditNote struct {
	actor, reason string
}

// WithAudit records who made a mutation and why: Manager.Cancel adds
// them to its cancelled event's payload as "actor" and "reason" (each left
// out when empty), so the audit log says who cancelled a flow. Each is at
// most 1024 bytes of UTF-8; a longer or invalid one makes the
// mutation fail with ErrInvalidData, writing nothing. Other mutations
// ignore it.
func WithAudit(actor, reason string) MutationOption {
	return func(m *mutation) { m.audit = &auditNote{actor: actor, reason: reason} }
}

// auditPayload is the payload of an event that carries the mutation's
// audit note: {} without one.
func (m mutation) auditPayload() (json.RawMessage, error) {
	if m.audit == nil {
		return json.RawMessage(`{}`), nil
	}
	fields := make([]string, 0, 2)
	for _, f := range []struct{ name, v string }{{"actor", m.audit.actor}, {"reason", m.audit.reason}} {
		if strings.TrimSpace(f.v) == "" {
			continue
		}
		if len(f.v) > maxAuditText || !utf8.ValidString(f.v) {
			return nil, fmt.Errorf("%w: the audit %s is %d bytes or not UTF-8 (at most %d bytes of UTF-8)",
				ErrInvalidData, f.name, len(f.v), maxAuditText)
		}
		fields = append(fields, jsonString(f.name)+":"+jsonString(f.v))
	}
	return json.RawMessage("{" + strings.Join(fields, ",") + "}"), nil
}

// maxCallIDBytes is the longest call id WithCallID accepts.
const maxCallIDBytes = 64

// callMemory is how many of a flow's most recent mutating calls the flow
// remembers (by call id) so that a call re-sent after its reply was lost
// applies once; resume-bridge messages have a memory of their own. A
// memory is one hash field of at most 64 bytes (a longer value would
// turn the flow hash from a listpack into a hashtable): it keeps up to
// callMemory library-generated ids, fewer long ones (WithCallID, bridge
// message ids: about 3), always at least the newest.
const callMemory = 6

// WithCallID names one logical call, so that running it again applies
// once: a repeat of a call the flow still remembers writes nothing and
// answers as the first run did (the flow as persisted now;
// UpdateAndAppend also the first run's event). A flow remembers its 6
// most recent mutating calls with library-generated ids, fewer with long
// ids (about 3 of 64 bytes), always at least the newest. Use it to retry a mutation whose outcome you did not learn
// (a timeout, a crash between the call and its record): pass the same id
// on every attempt of that call, and a new id for a new call. Without it
// each call gets a random id, which makes go-redis's own re-sends (after
// a dropped connection or a read timeout) harmless. The id must be 1 to
// 64 bytes of printable ASCII without spaces, ':' or a leading '~'; an
// invalid id makes the mutation fail with ErrInvalidData.
func WithCallID(id string) MutationOption {
	return func(m *mutation) { m.call = id; m.callSet = true }
}

// validCallID checks a caller's call id.
func validCallID(id string) error {
	if id == "" || len(id) > maxCallIDBytes || strings.HasPrefix(id, "~") {
		return fmt.Errorf("%w: call id %q must be 1 to %d bytes and not start with '~'", ErrInvalidData, id, maxCallIDBytes)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' || c == ':' {
			return fmt.Errorf("%w: call id %q holds a space, ':' or a non-printable byte", ErrInvalidData, id)
		}
	}
	return nil
}

// newCallID returns a random call id: 48 bits in 8 characters. It only
// has to differ from the callMemory calls a flow remembers (a chance of
// about 3e-14 per call that it does not), and every byte is kept in
// each flow's ring.
func newCallID() string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	return base64.RawURLEncoding.EncodeToString(b[:6])
}

// bridgeCallID is the call id of a resume-bridge message: remembered
// apart from other calls, so its redelivery is recognised however many
// calls the flow saw meanwhile.
func bridgeCallID(msgID string) string { return "~" + msgID }

// check refuses a mutation whose options are invalid.
func (m mutation) check() error {
	if m.next != nil {
		return fmt.Errorf("%w: WithNext applies to Finish, Fail, SetWaiting and Cancel only", ErrInvalidData)
	}
	if m.callSet && !m.internal {
		return validCallID(m.call)
	}
	return nil
}
