package taskflow

import (
	"encoding/json"
	"fmt"
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

// WithoutState makes a mutation return the flow without its state
// (Flow.State is nil): the reply then costs the same whatever the state's
// size. By default a mutation returns the whole flow as persisted.
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
	if raw == nil {
		return []any{"none"}, nil
	}
	if len(raw) > s.maxState {
		return nil, fmt.Errorf("%w: %s is %d bytes, over the limit of %d", ErrInvalidData, what, len(raw), s.maxState)
	}
	if !isObject(raw) {
		return []any{"replace", string(raw)}, nil
	}
	keys, vals, err := splitObject(raw)
	if err != nil {
		return nil, err
	}
	if len(keys) > s.limits.PatchKeys {
		return nil, fmt.Errorf("%w: %s has %d top-level keys, over the limit of %d", ErrInvalidData, what, len(keys), s.limits.PatchKeys)
	}
	mode := "object"
	if merge {
		mode = "merge"
	}
	args := make([]any, 0, 1+2*len(keys))
	args = append(args, mode)
	for i, k := range keys {
		args = append(args, "$"+k, string(vals[i])) // a state key's field
	}
	return args, nil
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
