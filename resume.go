package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// Resuming a flow by an external event.
//
// Every door an event comes in by reaches its flow by one path, written
// once: TryResumeExternal (by flow id), ResumeByCorrelation (by topic
// and correlation id), the resume bridge (RunResumeBridge, bridge.go),
// and so the NATS bridge, which publishes to the resume bridge. Each
// door names the event (newEvent: checked once) and hands it to
// resume, which decides, in one place, whether an event nobody waits
// for is kept as an early event (WithEarlyEvents). early.go holds the
// store's side of early events: keeping, offering, taking, settling,
// and the waiter's half (SetWaiting, TakeEarlyEvent) and the tick's
// re-drive of claims (redriveEarly), which start here and in manager.go.

// newEvent checks an event's labels and reads its payload (nil or JSON
// null is no payload: no resume_event is merged, as in the original).
// It is the only check of an event, whatever door it came in by. to is
// the flow id the event is addressed to; nil: every flow waiting for
// topic and correlationID.
func (m *Manager) newEvent(to *uuid.UUID, topic, correlationID string, payload any, id string, mut mutation) (externalEvent, error) {
	if err := m.store.checkEventPair(topic, correlationID); err != nil {
		return externalEvent{}, err
	}
	p, err := toJSON("payload", payload)
	if err != nil {
		return externalEvent{}, err
	}
	if string(p) == "null" {
		p = nil
	}
	ev := externalEvent{topic: topic, correlationID: correlationID, cp: corrPrefix(topic, correlationID),
		payload: p, id: id, mut: mut}
	if to != nil {
		ev.byFlow, ev.flowID = true, *to
	}
	return ev, nil
}

// TryResumeExternal resumes flowID if it is waiting for an external event
// with exactly topic and correlationID, merging {"resume_event": payload}
// into its state when payload is not nil (nor JSON null). It returns
// (nil, nil) when the flow is unknown, not waiting, or waiting for
// something else; when the store keeps early events (WithEarlyEvents, the
// default) the event is then kept for the flow, unless it is unknown or
// terminal, and the flow's next SetWaiting on topic and correlationID
// takes it. A cancel-requested flow waiting for the event is refused with
// ErrCancelPending (the next tick cancels it).
func (m *Manager) TryResumeExternal(ctx context.Context, flowID uuid.UUID, topic, correlationID string, payload any) (*Flow, error) {
	ev, err := m.newEvent(&flowID, topic, correlationID, payload, newEventID(), mutation{})
	if err != nil {
		return nil, err
	}
	fs, _, err := m.resume(ctx, ev)
	if len(fs) == 0 {
		return nil, err
	}
	return fs[0], err
}

// ResumeByCorrelation resumes a flow waiting for an external event with
// topic and correlationID, merging {"resume_event": payload} when payload
// is not nil (nor JSON null), and returns the resumed flows (none is not
// an error). It looks the pair up in every shard's correlation index, in
// one pipeline.
//
// When the store keeps early events (WithEarlyEvents, the default), the
// event is consumed once: it resumes one waiting flow, or, when none
// waits, is kept until a flow's SetWaiting takes it; each event resumes
// at most one flow. With early events off, every flow waiting for the
// pair is resumed and an event nobody waits for is dropped.
func (m *Manager) ResumeByCorrelation(ctx context.Context, topic, correlationID string, payload any) ([]*Flow, error) {
	ev, err := m.newEvent(nil, topic, correlationID, payload, newEventID(), mutation{})
	if err != nil {
		return nil, err
	}
	fs, _, err := m.resume(ctx, ev)
	return fs, err
}

// resume delivers a checked event: the one path of an external event to
// its flow. It returns the flows the event resumed (by this call or by an
// earlier delivery of the same event) and how many of them this call
// resumed (fresh; with early events off a repeat is not told apart).
//
// Whether an event nobody waits for is kept is decided here, once: with
// early events on, an event for a flow id is resumed or kept in one
// script (deliver_event.lua, mode keep), and one by correlation is kept
// first, then offered to a waiting flow (publishEarly); with them off,
// the event resumes the flows waiting for it, by a plain resume, and is
// otherwise dropped.
func (m *Manager) resume(ctx context.Context, ev externalEvent) ([]*Flow, int, error) {
	s := m.store
	keep := s.early.on()
	// An event that may be kept, or that goes to several flows, must fit
	// a state on its own; one merged into a single flow's state only is
	// checked by the merge, which fails the flow (failUnmergeable).
	if (keep || !ev.byFlow) && len(ev.payload) > s.maxState {
		return nil, 0, fmt.Errorf("%w: payload is %d bytes, over the limit of %d", ErrInvalidData, len(ev.payload), s.maxState)
	}
	if err := s.ensureLoaded(ctx); err != nil {
		return nil, 0, err
	}
	if keep {
		if err := s.recordLayout(ctx); err != nil {
			return nil, 0, err
		}
	}
	switch {
	case ev.byFlow && keep:
		f, outcome, err := s.deliver(ctx, ev.flowID, ev.cp, ev.id, ev.payload, "keep", false)
		if errors.Is(err, ErrStateTooLarge) {
			return nil, 0, m.failUnmergeable(ctx, ev, ev.flowID, err)
		}
		return flowList(f), count(outcome == earlyUsed), err
	case ev.byFlow:
		f, err := m.resumeWaiting(ctx, ev, ev.flowID)
		return flowList(f), count(f != nil), err
	case keep:
		return s.publishEarly(ctx, ev)
	}
	ids, err := s.waitersOf(ctx, ev.cp)
	if err != nil {
		return nil, 0, err
	}
	var out []*Flow
	for _, id := range ids {
		f, err := m.resumeWaiting(ctx, ev, id)
		if f != nil {
			out = append(out, f)
		}
		if err != nil {
			return out, len(out), err
		}
	}
	return out, len(out), nil
}

// resumeWaiting resumes flow id with ev by a plain resume (early events
// off), if it waits for ev: it returns nil, nil when it does not.
func (m *Manager) resumeWaiting(ctx context.Context, ev externalEvent, id uuid.UUID) (*Flow, error) {
	var patch any
	if ev.payload != nil {
		patch = json.RawMessage(`{"resume_event":` + string(ev.payload) + `}`)
	}
	req, err := m.resumeReq(id, patch, "corr:"+corrMember(ev.topic, ev.correlationID, id))
	if err != nil {
		return nil, err
	}
	req.mut = ev.mut
	f, err := m.store.transition(ctx, req)
	if errors.Is(err, errNoMatch) {
		return nil, nil
	}
	if errors.Is(err, ErrStateTooLarge) {
		return nil, m.failUnmergeable(ctx, ev, id, err)
	}
	return f, err
}

// flowList is f as a list: nil when f is nil.
func flowList(f *Flow) []*Flow {
	if f == nil {
		return nil
	}
	return []*Flow{f}
}

// count is 1 when b holds.
func count(b bool) int {
	if b {
		return 1
	}
	return 0
}

// failUnmergeable fails flow id, whose incoming event ev cannot be merged
// (the state would pass its cap), if it still waits for that event, so
// the event is never dropped silently: the flow's failure reason says
// so. It returns err, noting that the flow was failed.
func (m *Manager) failUnmergeable(ctx context.Context, ev externalEvent, id uuid.UUID, err error) error {
	reason := fmt.Sprintf("an event for topic %q could not be merged: %v", ev.topic, err)
	if max := m.store.limits.TextBytes; len(reason) > max {
		reason = reason[:max]
	}
	now, _ := m.store.clock()
	failure, merr := marshalJSON(map[string]any{
		"failure": map[string]string{"reason": reason, "at": now.Format(time.RFC3339)},
	})
	if merr != nil {
		return err
	}
	state, serr := m.store.stateArgs("failure", failure, true)
	if serr != nil {
		return err
	}
	guard := "corr:" + corrMember(ev.topic, ev.correlationID, id)
	if _, ferr := m.store.transition(ctx, failReq(id, reason, failure, state, guard, ev.mut)); ferr != nil {
		return err
	}
	return fmt.Errorf("%w (flow %s was failed with this reason)", err, id)
}

// TakeEarlyEvent resumes a flow waiting for an external event with an
// event kept for its topic and correlation id (published by correlation),
// as SetWaiting does after storing the wait, and returns the flow as
// persisted (running when it took one, else as it is). Call it when
// SetWaiting failed after the wait was stored (its error says so), or for
// a flow put waiting by RedisStore.UpdateAndAppend. Events addressed to
// the flow's id are taken by SetWaiting's own script only. A flow that
// does not wait for an external event is returned unchanged.
func (m *Manager) TakeEarlyEvent(ctx context.Context, id uuid.UUID) (*Flow, error) {
	f, err := m.store.get(ctx, id)
	if err != nil || f.Status != StatusWaiting || f.Wait == nil || !m.store.early.on() {
		return f, err
	}
	w, err := ParseWaitCondition(f.Wait)
	if err != nil || w.Kind != WaitKindExternalEvent {
		return f, nil
	}
	return m.store.takeEarlyEvent(ctx, f, corrPrefix(w.Topic, w.CorrelationID), false)
}

// redriveEarly finishes the claims past due (their owner died or
// stalled), at most one batch per shard per tick, and returns how many
// it settled (see RedisStore.redriveClaims).
func (e *WaitEngine) redriveEarly(ctx context.Context, nowMs string) (int, error) {
	if !e.s.early.on() {
		return 0, nil
	}
	// Claims fall due earlyClaimTimeout after they were taken, and only
	// when their owner died: looking once per earlyRedriveEvery keeps an
	// idle tick at its cost most of the time.
	ms, _ := strconv.ParseInt(nowMs, 10, 64)
	if last := e.earlyAt.Load(); last != 0 && ms >= last && ms-last < earlyRedriveEvery.Milliseconds() {
		return 0, nil
	}
	e.earlyAt.Store(ms)
	return e.s.redriveClaims(ctx, nowMs, e.batch)
}
