package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Resuming a flow by an external event: by flow id (TryResumeExternal)
// or by topic and correlation id (ResumeByCorrelation); the resume
// bridge (bridge.go) and the mailbox (mailbox.go) build on these.

// TryResumeExternal resumes flowID if it is waiting for an external event
// with exactly topic and correlationID, merging {"resume_event": payload}
// into its state when payload is not nil (nor JSON null). It returns
// (nil, nil) when the flow is unknown, not waiting, or waiting for
// something else; when the store keeps early events (WithEarlyEvents, the
// default) the event is then kept for the flow, unless it is unknown or
// terminal, and the flow's next SetWaiting on topic and correlationID
// takes it. A cancel-requested flow waiting for the event is refused with
// ErrCancelPending (the next tick cancels it).
func (e *WaitEngine) TryResumeExternal(ctx context.Context, flowID uuid.UUID, topic, correlationID string, payload any) (*Flow, error) {
	return e.m.TryResumeExternal(ctx, flowID, topic, correlationID, payload)
}

// ResumeByCorrelation resumes a flow waiting for topic and correlationID
// (with the mailbox off, every such flow), wherever it lives, for senders
// that do not know the flow id, or keeps the event; see
// Manager.ResumeByCorrelation.
func (e *WaitEngine) ResumeByCorrelation(ctx context.Context, topic, correlationID string, payload any) ([]*Flow, error) {
	return e.m.ResumeByCorrelation(ctx, topic, correlationID, payload)
}

// TryResumeExternal: see WaitEngine.TryResumeExternal.
func (m *Manager) TryResumeExternal(ctx context.Context, flowID uuid.UUID, topic, correlationID string, payload any) (*Flow, error) {
	f, _, err := m.tryResumeExternal(ctx, flowID, topic, correlationID, payload, newEventID(), mutation{})
	return f, err
}

// tryResumeExternal is TryResumeExternal with the event's id (the bridge
// names an event by its request, so a request handled again is
// recognised) and mutation options (the bridge names each request's
// calls; see bridgeCallID). fresh tells whether this call resumed the
// flow returned (not an earlier delivery of the same event; with the
// mailbox off a repeat is not told apart).
func (m *Manager) tryResumeExternal(ctx context.Context, flowID uuid.UUID, topic, correlationID string, payload any, eventID string, mut mutation) (f *Flow, fresh bool, err error) {
	if err := m.store.checkEventPair(topic, correlationID); err != nil {
		return nil, false, err
	}
	p, err := eventPayload(payload)
	if err != nil {
		return nil, false, err
	}
	if m.store.early.on() {
		if len(p) > m.store.maxState {
			return nil, false, fmt.Errorf("%w: payload is %d bytes, over the limit of %d", ErrInvalidData, len(p), m.store.maxState)
		}
		if err := m.store.recordLayout(ctx); err != nil {
			return nil, false, err
		}
		f, outcome, err := m.store.deliver(ctx, flowID, corrPrefix(topic, correlationID), eventID, p, "keep", false)
		if errors.Is(err, ErrStateTooLarge) {
			// The event cannot be merged: fail the flow if it still waits
			// for it, rather than drop the event in silence.
			req, rerr := m.resumeReq(flowID, nil, "corr:"+corrMember(topic, correlationID, flowID))
			if rerr != nil {
				return nil, false, err
			}
			req.mut = mut
			return nil, false, m.failUnmergeable(ctx, req, topic, err)
		}
		return f, outcome == earlyUsed, err
	}
	var patch any
	if p != nil {
		patch = json.RawMessage(`{"resume_event":` + string(p) + `}`)
	}
	req, err := m.resumeReq(flowID, patch, "corr:"+corrMember(topic, correlationID, flowID))
	if err != nil {
		return nil, false, err
	}
	req.mut = mut
	f, err = m.store.transition(ctx, req)
	if errors.Is(err, errNoMatch) {
		return nil, false, nil
	}
	if errors.Is(err, ErrStateTooLarge) {
		return nil, false, m.failUnmergeable(ctx, req, topic, err)
	}
	return f, f != nil, err
}

// failUnmergeable fails a flow whose incoming event cannot be merged (the
// state would pass its cap), if it still waits for that event, so the
// event is never dropped silently: the flow's failure reason says so.
// It returns err, noting that the flow was failed.
func (m *Manager) failUnmergeable(ctx context.Context, req transitionReq, topic string, err error) error {
	reason := fmt.Sprintf("an event for topic %q could not be merged: %v", topic, err)
	if max := m.store.limits.TextBytes; len(reason) > max {
		reason = reason[:max]
	}
	now, _, _ := m.store.clock()
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
	if _, ferr := m.store.transition(ctx, failReq(req.id, reason, failure, state, req.guard, req.mut)); ferr != nil {
		return err
	}
	return fmt.Errorf("%w (flow %s was failed with this reason)", err, req.id)
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
// at most one flow. With the mailbox off, every flow waiting for the pair
// is resumed and an event nobody waits for is dropped.
func (m *Manager) ResumeByCorrelation(ctx context.Context, topic, correlationID string, payload any) ([]*Flow, error) {
	fs, _, err := m.resumeByCorrelation(ctx, topic, correlationID, payload, newEventID(), mutation{})
	return fs, err
}

// resumeByCorrelation is ResumeByCorrelation with the event's id and
// mutation options (see tryResumeExternal); fresh counts the flows this
// call resumed (not an earlier delivery of the same event).
func (m *Manager) resumeByCorrelation(ctx context.Context, topic, correlationID string, payload any, eventID string, mut mutation) (out []*Flow, fresh int, err error) {
	if err := m.store.checkEventPair(topic, correlationID); err != nil {
		return nil, 0, err
	}
	p, err := eventPayload(payload)
	if err != nil {
		return nil, 0, err
	}
	if len(p) > m.store.maxState {
		return nil, 0, fmt.Errorf("%w: payload is %d bytes, over the limit of %d", ErrInvalidData, len(p), m.store.maxState)
	}
	if err := m.store.ensureLoaded(ctx); err != nil {
		return nil, 0, err
	}
	cp := corrPrefix(topic, correlationID)
	if m.store.early.on() {
		if err := m.store.recordLayout(ctx); err != nil {
			return nil, 0, err
		}
		fs, isFresh, err := m.publishEarly(ctx, cp, eventID, p)
		if isFresh {
			fresh = 1
		}
		return fs, fresh, err
	}
	ids, err := m.store.waitersOf(ctx, cp)
	if err != nil {
		return nil, 0, err
	}
	for _, id := range ids {
		f, isFresh, err := m.tryResumeExternal(ctx, id, topic, correlationID, p, eventID, mut)
		if f != nil {
			out = append(out, f)
			if isFresh {
				fresh++
			}
		}
		if err != nil {
			return out, fresh, err
		}
	}
	return out, fresh, nil
}
