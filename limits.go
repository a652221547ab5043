package taskflow

import (
	"fmt"
	"strings"
)

// maxRevision is the largest revision, event id and attempts count a
// flow holds: the scripts count in Lua, which formats a number with 14
// significant digits, so 10^14 would be written as "1e+14" and read back
// as garbage. InsertFlow refuses a larger revision (ErrInvalidData), a
// retry policy a larger MaxAttempts, and a mutation that could pass it
// is refused with ErrInvalidData and ErrRevisionLimit, writing nothing
// (a script bumps the revision and the event id at most twice, so a
// flow takes changes while both are at most maxRevision-2). A flow gets
// there only by an import: one change a millisecond takes 3,000 years.
const maxRevision = 99_999_999_999_999

// checkLen refuses a string longer than max bytes.
func checkLen(name, v string, max int) error {
	if len(v) > max {
		return fmt.Errorf("%w: %s is %d bytes, over the limit of %d", ErrInvalidData, name, len(v), max)
	}
	return nil
}

// limit is one string to check: its name, value and bound.
type limit struct {
	name string
	v    string
	max  int
}

// lim is a limit.
func lim(name, v string, max int) limit { return limit{name, v, max} }

// checkLens refuses the first string over its bound.
func checkLens(items ...limit) error {
	for _, it := range items {
		if err := checkLen(it.name, it.v, it.max); err != nil {
			return err
		}
	}
	return nil
}

// checkFlowText applies the rules for a flow's strings (valid UTF-8,
// each within its bound: LabelBytes, TextBytes for the goal) wherever a
// flow is written: a create, UpdateAndAppend, InsertFlow.
func (s *RedisStore) checkFlowText(controllerID, goal, owner, origin, step string) error {
	if err := checkText("controller_id", controllerID, "goal", goal, "owner_session_key", owner,
		"requester_origin", origin, "current_step", step); err != nil {
		return err
	}
	return checkLens(lim("controller_id", controllerID, s.limits.LabelBytes), lim("goal", goal, s.limits.TextBytes),
		lim("owner_session_key", owner, s.limits.LabelBytes), lim("requester_origin", origin, s.limits.LabelBytes),
		lim("current_step", step, s.limits.LabelBytes))
}

// checkStepText applies the rules for a step's strings (valid UTF-8,
// each within its bound) wherever a step is written: InsertStep,
// RecordStepObservation, UpdateStep, InsertFlow.
func (s *RedisStore) checkStepText(runID, task, childSessionKey string) error {
	if err := checkText("run_id", runID, "task", task, "child_session_key", childSessionKey); err != nil {
		return err
	}
	return checkLens(lim("run_id", runID, s.limits.LabelBytes), lim("task", task, s.limits.TextBytes),
		lim("child_session_key", childSessionKey, s.limits.LabelBytes))
}

// checkEventKind applies the Manager's rules to an event kind: required,
// valid UTF-8, within LabelBytes.
func (s *RedisStore) checkEventKind(kind EventKind) error {
	if strings.TrimSpace(string(kind)) == "" {
		return fmt.Errorf("%w: event kind is required", ErrInvalidData)
	}
	if err := checkText("event kind", string(kind)); err != nil {
		return err
	}
	return checkLen("event kind", string(kind), s.limits.LabelBytes)
}

// checkEventPair applies the label rules to an external event's topic and
// correlation id: both required, valid UTF-8, each within LabelBytes (an
// event nobody can match must not be kept, nor a wait no event can end).
func (s *RedisStore) checkEventPair(topic, correlationID string) error {
	if strings.TrimSpace(topic) == "" || strings.TrimSpace(correlationID) == "" {
		return fmt.Errorf("%w: topic and correlation_id are required", ErrInvalidData)
	}
	if err := checkText("the topic", topic, "the correlation_id", correlationID); err != nil {
		return err
	}
	return checkLens(lim("topic", topic, s.limits.LabelBytes), lim("correlation_id", correlationID, s.limits.LabelBytes))
}

// checkWorker applies the label rules to a claim's controller and worker
// ids: both required, valid UTF-8, each within LabelBytes (the worker id
// is kept in the lease and in the claimed event).
func (s *RedisStore) checkWorker(controllerID, workerID string) error {
	if controllerID == "" || strings.TrimSpace(workerID) == "" {
		return fmt.Errorf("%w: a controller id and a worker id are required", ErrInvalidData)
	}
	if err := checkText("controller_id", controllerID, "worker_id", workerID); err != nil {
		return err
	}
	return checkLens(lim("controller_id", controllerID, s.limits.LabelBytes), lim("worker_id", workerID, s.limits.LabelBytes))
}

// checkWaitLabels applies the label rules to a wait condition's topic and
// correlation id (a wait that is no external event passes).
func (s *RedisStore) checkWaitLabels(w waitArgs) error {
	if w.topic == "" && w.correlationID == "" {
		return nil
	}
	return checkLens(lim("topic", w.topic, s.limits.LabelBytes), lim("correlation_id", w.correlationID, s.limits.LabelBytes))
}

// The default bounds (DefaultLimits), and the fixed ones around them.
const (
	defaultLabelBytes    = 1024
	defaultTextBytes     = 64 << 10
	defaultPatchKeys     = 4096
	defaultStepsPerFlow  = maxInsertSteps // so an imported flow fits
	defaultEventsPerFlow = 1000
	defaultEventBytes    = 1 << 20
	defaultStateBytes    = 1 << 20
	// maxStepsPerFlowLimit is the largest Limits.StepsPerFlow a store
	// takes: pruning a flow deletes its steps in one script, and a script
	// must not block Redis for long.
	maxStepsPerFlowLimit   = 10000
	defaultChildrenPerFlow = 10000
	defaultChildDepth      = 16
	// maxChildrenLimit is the largest Limits.ChildrenPerFlow a store
	// takes: a join's summary and a prune read a parent's children in
	// one script.
	maxChildrenLimit = 100000
	// maxChildDepthLimit is the largest Limits.ChildDepth a store takes.
	maxChildDepthLimit = 1000
)

// Limits bounds what one flow and one call may hold, so that a flow's
// memory and one script's work stay bounded whatever the caller sends.
// WithLimits sets them; a zero field means its default (DefaultLimits).
// NewRedisStore refuses a negative field, except EventsPerFlow and
// EventBytes, where a negative value lifts the bound.
type Limits struct {
	// LabelBytes bounds each identifier-like string a flow or step
	// stores: controller id, owner session key, requester origin,
	// current step, run id, child session key, event kind; an external
	// event's topic and correlation id (each: in a wait condition,
	// TryResumeExternal, ResumeByCorrelation, PublishResume and a bridge
	// message) and a worker id (Claim). Default 1024 (1 KiB).
	LabelBytes int
	// TextBytes bounds each free-text string: goal, step task, failure
	// reason. Default 65,536 (64 KiB).
	TextBytes int
	// PatchKeys bounds the top-level keys of one state, patch or result
	// written in one call: a script's work grows with them. Default 4096.
	PatchKeys int
	// StepsPerFlow is the most steps one flow holds:
	// RecordStepObservation and InsertStep refuse a new run id beyond it
	// with ErrInvalidData (an observation of a step already recorded
	// still updates it). It bounds the memory of a flow's steps and the
	// work of pruning one flow (deleted in one script). Default 1000,
	// the most steps one InsertFlow writes, so an imported flow fits; at
	// most 10,000.
	StepsPerFlow int
	// EventsPerFlow is how many audit events are kept per flow, newest
	// first. Default 1000; a negative value keeps every event (EventBytes
	// still applies). Whichever of EventsPerFlow and EventBytes is met
	// first drops the oldest entries.
	EventsPerFlow int
	// EventBytes bounds one flow's audit log in bytes of its entries:
	// appending an event drops the oldest ones until the log fits, but
	// the newest entry is always kept. Default 1,048,576 (1 MiB); a
	// negative value keeps every byte (EventsPerFlow still applies). A
	// flow's log written before the byte bound, or while it was off, is
	// cut to its newest 1,000 entries when its size is first counted, so
	// no call reads an unbounded log.
	EventBytes int
	// StateBytes caps the size of a flow's state and of any one patch,
	// result or event payload, in bytes of compact JSON. Larger writes
	// fail with ErrInvalidData and change nothing. Default 1,048,576
	// (1 MiB).
	StateBytes int
	// ChildrenPerFlow is the most children one flow may start
	// (Manager.StartChild); a start past it is refused with
	// ErrInvalidData. It bounds a parent's register of children and the
	// work of its join and its prune. Default 10,000; at most 100,000.
	ChildrenPerFlow int
	// ChildDepth is how deep a tree of flows may grow: a root's children
	// are at depth 1, theirs at 2. Default 16; at most 1,000.
	ChildDepth int
}

// DefaultLimits returns the bounds a store uses for every Limits field
// left zero.
func DefaultLimits() Limits {
	return Limits{
		LabelBytes:    defaultLabelBytes,
		TextBytes:     defaultTextBytes,
		PatchKeys:     defaultPatchKeys,
		StepsPerFlow:  defaultStepsPerFlow,
		EventsPerFlow: defaultEventsPerFlow,
		EventBytes:    defaultEventBytes,
		StateBytes:    defaultStateBytes,

		ChildrenPerFlow: defaultChildrenPerFlow,
		ChildDepth:      defaultChildDepth,
	}
}

// WithLimits sets the store's bounds on what one flow and one call may
// hold (see Limits; fields left zero keep their defaults). It is the one
// way to set them.
func WithLimits(l Limits) StoreOption {
	return func(c *storeConfig) { c.limits = l }
}

// resolve fills the defaults in and checks the bounds.
func (l Limits) resolve() (Limits, error) {
	d := DefaultLimits()
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.LabelBytes, d.LabelBytes)
	def(&l.TextBytes, d.TextBytes)
	def(&l.PatchKeys, d.PatchKeys)
	def(&l.StepsPerFlow, d.StepsPerFlow)
	def(&l.EventsPerFlow, d.EventsPerFlow)
	def(&l.EventBytes, d.EventBytes)
	def(&l.StateBytes, d.StateBytes)
	def(&l.ChildrenPerFlow, d.ChildrenPerFlow)
	def(&l.ChildDepth, d.ChildDepth)
	if l.LabelBytes < 0 || l.TextBytes < 0 || l.PatchKeys < 0 || l.StepsPerFlow < 0 || l.StateBytes < 0 ||
		l.ChildrenPerFlow < 0 || l.ChildDepth < 0 {
		return l, fmt.Errorf("%w: limits %+v: a negative bound", ErrInvalidData, l)
	}
	if l.StepsPerFlow > maxStepsPerFlowLimit {
		return l, fmt.Errorf("%w: limits: %d steps per flow, over the most a store takes (%d)", ErrInvalidData, l.StepsPerFlow, maxStepsPerFlowLimit)
	}
	if l.ChildrenPerFlow > maxChildrenLimit || l.ChildDepth > maxChildDepthLimit {
		return l, fmt.Errorf("%w: limits: %d children per flow and depth %d, over the most a store takes (%d, %d)",
			ErrInvalidData, l.ChildrenPerFlow, l.ChildDepth, maxChildrenLimit, maxChildDepthLimit)
	}
	if l.EventsPerFlow < 0 {
		l.EventsPerFlow = 0 // the scripts' "keep every event"
	}
	if l.EventBytes < 0 {
		l.EventBytes = 0 // the scripts' "no bound"
	}
	return l, nil
}

// Limits of one InsertFlow call: it is one script, and a script must do
// bounded work.
const (
	// maxInsertSteps is the most steps one InsertFlow writes.
	maxInsertSteps = 1000
	// maxInsertEvents is the most audit events one InsertFlow writes
	// (after the store's event cap dropped the oldest).
	maxInsertEvents = 10000
)
