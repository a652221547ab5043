package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// The store's writes of a flow record: create, transitions, state
// updates, cancel requests and the store-level compare-and-set; each is
// one script (lua/<name>.lua) run by RedisStore.run.

// create runs create.lua.
func (s *RedisStore) create(ctx context.Context, in CreateManagedInput, mirrored bool) (*Flow, error) {
	return s.createWithID(ctx, uuid.New(), in, mirrored)
}

// createWithID runs create.lua for flow id; a taken id is
// ErrAlreadyExists.
func (s *RedisStore) createWithID(ctx context.Context, id uuid.UUID, in CreateManagedInput, mirrored bool) (*Flow, error) {
	for _, r := range []struct{ name, v string }{
		{"controller_id", in.ControllerID},
		{"goal", in.Goal},
		{"owner_session_key", in.OwnerSessionKey},
	} {
		if strings.TrimSpace(r.v) == "" {
			return nil, fmt.Errorf("%w: %s is required", ErrInvalidData, r.name)
		}
	}
	if err := s.checkFlowText(in.ControllerID, in.Goal, in.OwnerSessionKey, in.RequesterOrigin, in.CurrentStep); err != nil {
		return nil, err
	}
	state, err := toJSON("state", in.State)
	if err != nil {
		return nil, err
	}
	if state == nil {
		state = json.RawMessage(`{}`)
	}
	stateArgs, err := s.stateArgs("state", state, false)
	if err != nil {
		return nil, err
	}
	payload, _ := marshalJSON(map[string]string{
		"controller_id": in.ControllerID,
		"goal":          in.Goal,
		"current_step":  in.CurrentStep,
	})
	kid, fingerprint, err := s.idempotency(in, mirrored, state)
	if err != nil {
		return nil, err
	}
	if in.IdempotencyKey != "" {
		id = kid // the key names the flow
	}
	_, nowMs, nowStr := s.clock()
	mir := "0"
	if mirrored {
		mir = "1"
	}
	args := append(s.head(id, nowMs, nowStr, mutation{}),
		in.ControllerID, in.Goal, in.OwnerSessionKey, in.RequesterOrigin, in.CurrentStep, mir, string(payload), fingerprint,
		s.traceParent(ctx))
	args = append(args, stateArgs...)
	// Only a create can write to an empty flow space: it records the
	// layout; every other mutation needs a flow, hence a recorded layout.
	if err := s.recordLayout(ctx); err != nil {
		return nil, err
	}
	f, _, err := s.runFlowScript(ctx, s.scripts.create, id, s.keys.flowKeys(id, in.OwnerSessionKey), args)
	if errors.Is(err, ErrIdempotencyConflict) {
		return nil, fmt.Errorf("%w: flow %s was created with this key from other input", ErrIdempotencyConflict, id)
	}
	if err != nil {
		// Applied but not confirmed replicated: the flow exists.
		if !applied(err) {
			f = nil
		}
		return f, fmt.Errorf("taskflow: create flow: %w", err)
	}
	return f, nil
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

// transitionReq is one run of transition.lua.
type transitionReq struct {
	id      uuid.UUID
	from    FlowStatus // "" = any source the graph allows
	to      FlowStatus
	kind    EventKind
	payload json.RawMessage
	wait    waitArgs
	guard   string
	state   []any
	mut     mutation
	// early: a wait on an external event is met at once by an early
	// event kept for the flow (early.go).
	early bool
}

// transition runs transition.lua at the store's current time.
func (s *RedisStore) transition(ctx context.Context, r transitionReq) (*Flow, error) {
	if err := r.mut.check(); err != nil {
		return nil, err
	}
	_, nowMs, nowStr := s.clock()
	sc, keys, args := s.scripts.transition, s.keys.flowKeys(r.id, ""), s.transitionArgs(r, nowMs, nowStr)
	if r.early {
		sc, keys = s.scripts.transitionEarly, s.keys.withEarly(keys, r.id)
		args = append(args, s.early.memoryArgs()...) // last: see transition_early.lua
	}
	f, _, err := s.runFlowScript(ctx, sc, r.id, keys, args, r.meta())
	if err != nil {
		var te *TransitionError
		if errors.As(err, &te) {
			te.To = r.to
		}
		return f, err // f is nil unless applied (ErrNotReplicated)
	}
	return f, nil
}

// meta describes the transition to the observer.
func (r transitionReq) meta() opMeta {
	m := opMeta{event: r.kind}
	if r.kind == EventResumed {
		m.waitKind = waitKindOfGuard(r.guard)
	}
	return m
}

func (s *RedisStore) transitionArgs(r transitionReq, nowMs, nowStr string) []any {
	state := r.state
	if state == nil {
		state = []any{"none"}
	}
	args := append(s.head(r.id, nowMs, nowStr, r.mut),
		string(r.to), jsonString(string(r.kind)), string(r.payload),
		r.wait.json, r.wait.timerMs, r.wait.corr, r.guard, string(r.from))
	return append(args, state...)
}

// updateState runs update_state.lua.
func (s *RedisStore) updateState(ctx context.Context, id uuid.UUID, patch json.RawMessage, nextStep string, mut mutation) (*Flow, error) {
	if err := checkText("the next step", nextStep); err != nil {
		return nil, err
	}
	if err := checkLen("next_step", nextStep, s.limits.LabelBytes); err != nil {
		return nil, err
	}
	if err := mut.check(); err != nil {
		return nil, err
	}
	stateArgs, err := s.stateArgs("patch", patch, true)
	if err != nil {
		return nil, err
	}
	payload := []byte(`{"patch":` + rawOrNull(patch) + `,"next_step":` + stringOrNull(nextStep) + `}`)
	_, nowMs, nowStr := s.clock()
	args := append(s.head(id, nowMs, nowStr, mut), nextStep, string(payload))
	args = append(args, stateArgs...)
	f, _, err := s.runFlowScript(ctx, s.scripts.updateState, id, s.keys.flowKeys(id, ""), args)
	return f, err
}

// requestCancel runs request_cancel.lua.
func (s *RedisStore) requestCancel(ctx context.Context, id uuid.UUID, mut mutation) (*Flow, error) {
	if err := mut.check(); err != nil {
		return nil, err
	}
	_, nowMs, nowStr := s.clock()
	f, _, err := s.runFlowScript(ctx, s.scripts.requestCancel, id, s.keys.flowKeys(id, ""), s.head(id, nowMs, nowStr, mut))
	return f, err
}

// UpdateAndAppend writes the whole flow record f if the stored revision is
// still f.Revision, together with one audit event of kind and payload; the
// stored flow gets revision f.Revision+1 and the store's current time as
// UpdatedAt. ID, OwnerSessionKey and CreatedAt cannot change. On a stale
// revision it returns a *RevisionMismatchError (ErrRevisionMismatch) and
// writes nothing. Indexes (status, timers, correlation) follow the record;
// the state machine is not checked: this is the layer below the Manager.
func (s *RedisStore) UpdateAndAppend(ctx context.Context, f *Flow, kind EventKind, payload any) (*Flow, *FlowEvent, error) {
	if f == nil {
		return nil, nil, fmt.Errorf("%w: nil flow", ErrInvalidData)
	}
	if !f.Status.Valid() {
		return nil, nil, fmt.Errorf("%w: unknown flow status %q", ErrInvalidData, f.Status)
	}
	if err := s.checkEventKind(kind); err != nil {
		return nil, nil, err
	}
	if err := s.checkFlowText(f.ControllerID, f.Goal, f.OwnerSessionKey, f.RequesterOrigin, f.CurrentStep); err != nil {
		return nil, nil, err
	}
	state, err := toJSON("state", f.State)
	if err != nil {
		return nil, nil, err
	}
	if state == nil {
		state = json.RawMessage(`{}`)
	}
	stateArgs, err := s.stateArgs("state", state, false)
	if err != nil {
		return nil, nil, err
	}
	pl, err := toJSON("event payload", payload)
	if err != nil {
		return nil, nil, err
	}
	if pl == nil {
		pl = json.RawMessage(`{}`)
	}
	var wait waitArgs
	if f.Status == StatusWaiting && f.Wait != nil {
		wait, err = waitIndexArgs(f.ID, f.Wait)
		if err == nil {
			err = s.checkWaitLabels(wait)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	cancel := "0"
	if f.CancelRequested {
		cancel = "1"
	}
	_, nowMs, nowStr := s.clock()
	rev := f.Revision
	args := append(s.head(f.ID, nowMs, nowStr, mutation{expected: &rev, epoch: f.Epoch}),
		string(f.Status), f.ControllerID, f.Goal, f.OwnerSessionKey, f.RequesterOrigin, f.CurrentStep,
		cancel, wait.json, wait.timerMs, wait.corr, jsonString(string(kind)), string(pl))
	args = append(args, stateArgs...)
	nf, arr, err := s.runFlowScript(ctx, s.scripts.writeFlow, f.ID, s.keys.flowKeys(f.ID, ""), args)
	if nf == nil {
		return nil, nil, err
	}
	// Applied; err is nil or ErrNotReplicated, returned beside both.
	numbered, _ := arr[1].(string)
	ev, derr := decodeNumbered(f.ID, numbered)
	if derr != nil {
		return nil, nil, derr
	}
	return nf, ev, err
}
