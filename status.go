package taskflow

import "fmt"

// FlowStatus is the position of a flow in its state machine.
type FlowStatus string

// The statuses of a flow. Finished, failed and cancelled are terminal.
const (
	StatusCreated   FlowStatus = "created"
	StatusRunning   FlowStatus = "running"
	StatusWaiting   FlowStatus = "waiting"
	StatusCancelled FlowStatus = "cancelled"
	StatusFinished  FlowStatus = "finished"
	StatusFailed    FlowStatus = "failed"
)

// allStatuses lists every status in a fixed order (the order of the
// status index keys the scripts receive).
var allStatuses = [...]FlowStatus{
	StatusCreated, StatusRunning, StatusWaiting,
	StatusCancelled, StatusFinished, StatusFailed,
}

// Statuses returns every flow status, non-terminal ones first.
func Statuses() []FlowStatus {
	out := make([]FlowStatus, len(allStatuses))
	copy(out, allStatuses[:])
	return out
}

// transitions is the state machine: the single source of truth. The Lua
// scripts receive the allowed source statuses computed from it.
var transitions = map[FlowStatus][]FlowStatus{
	StatusCreated: {StatusRunning, StatusCancelled},
	StatusRunning: {StatusWaiting, StatusFinished, StatusFailed, StatusCancelled},
	StatusWaiting: {StatusRunning, StatusFailed, StatusCancelled},
}

// ParseFlowStatus parses one of the six status strings. Anything else is
// an error wrapping [ErrInvalidData].
func ParseFlowStatus(s string) (FlowStatus, error) {
	for _, st := range allStatuses {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("%w: unknown flow status %q", ErrInvalidData, s)
}

// String returns the status as stored and shown.
func (s FlowStatus) String() string { return string(s) }

// Valid reports whether s is one of the six statuses.
func (s FlowStatus) Valid() bool {
	_, err := ParseFlowStatus(string(s))
	return err == nil
}

// IsTerminal reports whether s is finished, failed or cancelled: a valid
// status the transition table leaves no edge out of.
func (s FlowStatus) IsTerminal() bool {
	return len(transitions[s]) == 0 && s.Valid()
}

// CanTransitionTo reports whether the state machine has an edge from s to
// next. It does not look at cancel requests; see [Flow.TransitionTo].
func (s FlowStatus) CanTransitionTo(next FlowStatus) bool {
	for _, t := range transitions[s] {
		if t == next {
			return true
		}
	}
	return false
}

// sourcesOf returns the statuses that may move to target.
func sourcesOf(target FlowStatus) []FlowStatus {
	var out []FlowStatus
	for _, from := range allStatuses {
		if from.CanTransitionTo(target) {
			out = append(out, from)
		}
	}
	return out
}

// MarshalText implements encoding.TextMarshaler.
func (s FlowStatus) MarshalText() ([]byte, error) {
	if !s.Valid() {
		return nil, fmt.Errorf("%w: unknown flow status %q", ErrInvalidData, string(s))
	}
	return []byte(s), nil
}

// UnmarshalText implements encoding.TextUnmarshaler; unknown strings are
// refused.
func (s *FlowStatus) UnmarshalText(b []byte) error {
	st, err := ParseFlowStatus(string(b))
	if err != nil {
		return err
	}
	*s = st
	return nil
}

// statusImplies is the one table of what a status implies for a flow's
// index entries: the prelude gives it to the scripts as STATUS, and
// Verify checks the keyspace against it. A terminal status is one the
// transition table leaves no edge out of (IsTerminal).
var statusImplies = map[FlowStatus]struct {
	// runnable: the flow is on its controller's ready queue or leased.
	runnable bool
	// waits: the flow may hold a wait (timer, correlation entries) and a
	// cancel-set entry.
	waits bool
}{
	StatusRunning: {runnable: true},
	StatusWaiting: {waits: true},
}

// waits reports whether a flow in status s may hold a wait, its index
// entries and a cancel-set entry (statusImplies).
func (s FlowStatus) waits() bool { return statusImplies[s].waits }

// runnable reports whether a flow in status s is on its controller's
// ready queue or leased (statusImplies).
func (s FlowStatus) runnable() bool { return statusImplies[s].runnable }
