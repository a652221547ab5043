package taskflow

import (
	"errors"
	"fmt"
)

// ErrStateTooLarge is wrapped (with ErrInvalidData) by a refusal whose
// state would exceed the store's cap (WithMaxStateBytes).
var ErrStateTooLarge = errors.New("taskflow: state too large")

// Bounds on what one call may store, so that a flow's memory and one
// script's work stay bounded whatever the caller sends.
const (
	// MaxLabelBytes bounds each identifier-like string a flow or step
	// stores: controller id, owner session key, requester origin, current
	// step, run id, child session key.
	MaxLabelBytes = 1024
	// MaxTextBytes bounds each free-text string: goal, step task, failure
	// reason.
	MaxTextBytes = 64 << 10
	// MaxPatchKeys bounds the top-level keys of one state, patch or
	// result written in one call: a script's work grows with them.
	MaxPatchKeys = 4096
)

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

// MaxStepsPerFlow is the most steps one flow holds: RecordStepObservation
// and InsertStep refuse a new run id beyond it with ErrInvalidData (an
// observation of a step already recorded still updates it). It bounds
// the memory of a flow's steps and the work of pruning one flow. It is
// MaxInsertSteps, so an imported flow fits too.
const MaxStepsPerFlow = MaxInsertSteps
