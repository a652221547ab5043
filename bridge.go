package taskflow

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/observe"
)

// ResumeRequest asks the resume bridge to resume a flow waiting for an
// external event. FlowID may be uuid.Nil: then every flow waiting for
// Topic and CorrelationID is resumed (ResumeByCorrelation).
type ResumeRequest struct {
	// ID names the request: the same id resumes a wait, or is kept as an
	// early event, at most once, however often the request is published
	// or handled (see PublishResume). Give the id the request has at its
	// source (a webhook's delivery id, a payment id, a broker's message
	// id) so that a publisher's retries carry it; when empty,
	// PublishResume makes one per call. 1 to 64 bytes of printable ASCII
	// without spaces, ':', '=' or a leading '~'.
	ID            string    `json:"id,omitempty"`
	FlowID        uuid.UUID `json:"flow_id"`
	Topic         string    `json:"topic"`
	CorrelationID string    `json:"correlation_id"`
	// Payload, when not nil, is merged into the state as resume_event.
	Payload any `json:"payload,omitempty"`
}

// bridgeMessage is the stream entry's "body" field.
type bridgeMessage struct {
	ID            string          `json:"id,omitempty"`
	FlowID        string          `json:"flow_id"`
	Topic         string          `json:"topic"`
	CorrelationID string          `json:"correlation_id"`
	Payload       json.RawMessage `json:"payload,omitempty"`
}

// PublishResume puts a resume request on the resume bridge, a Redis stream
// read by every engine's RunResumeBridge through one consumer group. The
// request is durable once this returns (under WithReplicaAcks, once the
// replicas confirmed it; a *NotReplicatedError says the request is on the
// master only: publish it again with the same ID): it is handled even if
// no engine runs yet, and a message an engine took but did not
// acknowledge (it died) is claimed by another. Topic and CorrelationID
// are required labels (valid UTF-8, at most Limits.LabelBytes each; else
// ErrInvalidData).
//
// A request applies at most once per ID (ResumeRequest.ID; one is made
// per call when empty, so go-redis re-sending a call whose reply was
// lost adds nothing): published again while the id is remembered
// (WithResumeIDMemory, default 24 h) it adds nothing, and handled again
// by the bridge it resumes no second wait and is not kept again.
func (m *Manager) PublishResume(ctx context.Context, req ResumeRequest) error {
	if err := m.store.checkEventPair(req.Topic, req.CorrelationID); err != nil {
		return err
	}
	if req.ID == "" {
		req.ID = newEventID()
	} else if err := validResumeID(req.ID); err != nil {
		return err
	}
	payload, err := toJSON("payload", req.Payload)
	if err != nil {
		return err
	}
	if len(payload) > m.store.maxState {
		return fmt.Errorf("%w: payload is %d bytes, over the limit of %d", ErrInvalidData, len(payload), m.store.maxState)
	}
	msg := bridgeMessage{ID: req.ID, Topic: req.Topic, CorrelationID: req.CorrelationID, Payload: payload}
	if req.FlowID != uuid.Nil {
		msg.FlowID = req.FlowID.String()
	}
	body, err := marshalJSON(msg)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidData, err)
	}
	s := m.store
	_, nowMs := s.clock()
	if _, err := s.run(ctx, s.scripts.publishResume, req.FlowID, []string{s.keys.bridge(), s.keys.bridgeRequests()},
		req.ID, nowMs, s.early.remember.Milliseconds(), s.early.rememberCap, string(body)); err != nil {
		return fmt.Errorf("taskflow: publish resume %s: %w", req.ID, err)
	}
	return nil
}

// validResumeID checks a caller's resume request id: a call id (see
// WithCallID) without '=' (the early events' records use it).
func validResumeID(id string) error {
	if err := validCallID(id); err != nil {
		return fmt.Errorf("%w (resume request id)", err)
	}
	if strings.Contains(id, "=") {
		return fmt.Errorf("%w: resume request id %q holds a '='", ErrInvalidData, id)
	}
	return nil
}

// BridgeStats counts what this engine's bridge did since it started.
type BridgeStats struct {
	// Handled messages were acknowledged, whatever their outcome.
	Handled int64 `json:"handled"`
	// Resumed flows (a message may resume none; a message handled again
	// counts only what its new handling resumed).
	Resumed int64 `json:"resumed"`
	// Malformed messages were acknowledged, logged and dropped.
	Malformed int64 `json:"malformed"`
	// Failed messages met a permanent error (e.g. the flow's cancel was
	// requested); they were acknowledged and logged.
	Failed int64 `json:"failed"`
	// Claimed messages were taken over from a consumer that went quiet.
	Claimed int64 `json:"claimed"`
}

// BridgeStats returns the bridge's counters.
func (e *WaitEngine) BridgeStats() BridgeStats {
	return BridgeStats{
		Handled: e.bridgeN.Load(), Resumed: e.bridgeR.Load(), Malformed: e.bridgeB.Load(),
		Failed: e.bridgeE.Load(), Claimed: e.bridgeC.Load(),
	}
}

// RunResumeBridge consumes resume requests until ctx ends, then returns
// ctx's error. Each message is acknowledged (and deleted from the stream,
// so it never grows beyond what is unhandled) only after it was handled;
// messages idle in another consumer for longer than the claim timeout are
// claimed and handled here. A malformed message is acknowledged, logged
// and counted. A message that fails because Redis is unreachable stays
// pending and is tried again. Handling a message twice is harmless:
// resuming a flow that is no longer waiting does nothing.
func (e *WaitEngine) RunResumeBridge(ctx context.Context) error {
	stream := e.s.keys.bridge()
	failing := false
	lastClaim := time.Time{}
	// own: this consumer may hold messages it read but did not finish
	// (at start, under a name used before; after an error, such as a
	// failover cutting a handling or its ack): it reads them again
	// before new ones, so they wait the transient pause, not the claim
	// timeout.
	own := true
	for ctx.Err() == nil {
		err := e.ensureGroup(ctx, stream)
		if err == nil {
			if time.Since(lastClaim) >= e.claim/2 {
				err = e.claimIdle(ctx, stream)
				if err == nil {
					lastClaim = time.Now()
				}
			}
		}
		if err == nil && own {
			var n int
			n, err = e.readOwn(ctx, stream)
			own = err != nil || n > 0
		}
		if err == nil && !own {
			err = e.readOnce(ctx, stream)
		}
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			own = true
			if !failing {
				e.log.Error("taskflow: resume bridge failing; will keep trying", "err", err)
				failing = true
			}
			sleepCtx(ctx, bridgeTransientPause)
			continue
		}
		if failing {
			e.log.Info("taskflow: resume bridge recovered")
			failing = false
		}
	}
	e.leaveGroup(stream)
	return ctx.Err()
}

// leaveGroup removes this engine's consumer from the group when it holds
// no pending message, so engines that come and go leave nothing behind.
// A consumer with pending messages stays: another engine claims them.
func (e *WaitEngine) leaveGroup(stream string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	pending, err := e.s.client.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: stream, Group: e.group, Start: "-", End: "+", Count: 1, Consumer: e.name,
	}).Result()
	if err != nil || len(pending) > 0 {
		return
	}
	_ = e.s.client.XGroupDelConsumer(ctx, stream, e.group, e.name).Err()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// ensureGroup creates the consumer group (from the stream's start, so
// requests published before any engine ran are handled).
func (e *WaitEngine) ensureGroup(ctx context.Context, stream string) error {
	err := e.s.client.XGroupCreateMkStream(ctx, stream, e.group, "0").Err()
	if err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("taskflow: bridge group: %w", err)
	}
	return nil
}

// claimIdle takes over messages other consumers held too long.
func (e *WaitEngine) claimIdle(ctx context.Context, stream string) error {
	start := "0-0"
	for i := 0; i < 10; i++ {
		msgs, next, err := e.s.client.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: stream, Group: e.group, Consumer: e.name,
			MinIdle: e.claim, Start: start, Count: defaultBridgeBatch,
		}).Result()
		if err != nil {
			return fmt.Errorf("taskflow: bridge claim: %w", err)
		}
		for _, msg := range msgs {
			e.bridgeC.Add(1)
			if err := e.handle(ctx, stream, msg, true); err != nil {
				return err
			}
		}
		if next == "0-0" || next == "" {
			return nil
		}
		start = next
	}
	return nil
}

// readOwn handles a batch of the messages this consumer read before and
// did not acknowledge (its pending list; a read from id 0 never blocks)
// and returns how many it found.
func (e *WaitEngine) readOwn(ctx context.Context, stream string) (int, error) {
	res, err := e.s.client.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: e.group, Consumer: e.name, Streams: []string{stream, "0"},
		Count: defaultBridgeBatch, Block: -1,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("taskflow: bridge read: %w", err)
	}
	n := 0
	for _, st := range res {
		for _, msg := range st.Messages {
			n++
			if err := e.handle(ctx, stream, msg, false); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// readOnce reads new messages, blocking up to the bridge block time.
func (e *WaitEngine) readOnce(ctx context.Context, stream string) error {
	res, err := e.s.client.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: e.group, Consumer: e.name, Streams: []string{stream, ">"},
		Count: defaultBridgeBatch, Block: e.block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("taskflow: bridge read: %w", err)
	}
	for _, st := range res {
		for _, msg := range st.Messages {
			if err := e.handle(ctx, stream, msg, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// handle processes one message (claimed: taken over from another
// consumer). It returns an error only when the message must stay pending
// (Redis trouble); everything else is acknowledged.
func (e *WaitEngine) handle(ctx context.Context, stream string, msg redis.XMessage, claimed bool) (herr error) {
	var ev *observe.Bridge
	if o := e.s.obs; o != nil && o.Bridge != nil {
		ev = &observe.Bridge{MessageID: msg.ID, Claimed: claimed, Start: time.Now()}
		defer observeBridge(ctx, o, ev, &herr)
	}
	req, perr := parseBridgeMessage(msg)
	var event externalEvent
	if perr == nil {
		// The request id (the message id for a message without one)
		// names the event: a request handled again (its ack was lost,
		// its engine died before acking, it was published twice) does
		// not resume a flow that waits again on the same correlation
		// id, nor is kept again.
		eventID := bridgeEventPrefix + msg.ID
		if req.ID != "" {
			eventID = requestEventPrefix + req.ID
		}
		var to *uuid.UUID
		if req.FlowID != "" {
			id, _ := uuid.Parse(req.FlowID)
			to = &id
		}
		mut := mutation{call: bridgeCall(eventID), callSet: true, internal: true}
		event, perr = e.m.newEvent(to, req.Topic, req.CorrelationID, payloadOrNil(req.Payload), eventID, mut)
	}
	if perr != nil {
		if ev != nil {
			ev.Outcome, ev.Err = "malformed", perr
		}
		e.bridgeB.Add(1)
		e.log.Warn("taskflow: dropping a malformed resume request", "id", msg.ID, "err", perr)
		return e.ack(ctx, stream, msg.ID)
	}
	fs, resumed, err := e.m.resume(ctx, event)
	if ev != nil {
		ev.FlowID, _ = uuid.Parse(req.FlowID)
		ev.Topic, ev.Err = req.Topic, err
		for _, f := range fs {
			ev.Resumed = append(ev.Resumed, observedFlow(f))
		}
		ev.Outcome = bridgeOutcome(resumed, err)
	}
	e.bridgeR.Add(int64(resumed))
	if err != nil {
		if !isPermanent(err) {
			return err
		}
		e.bridgeE.Add(1)
		e.log.Warn("taskflow: resume request could not be applied", "id", msg.ID, "flow_id", req.FlowID, "err", err)
	}
	return e.ack(ctx, stream, msg.ID)
}

// bridgeCall is the call id of a request's handling: a long event id is
// shortened to 12 characters of its SHA-256 (72 bits), so that a flow's
// ring of bridge calls (64 bytes, see WithCallID) still holds about 3.
func bridgeCall(eventID string) string {
	if len(eventID) <= 16 {
		return bridgeCallID(eventID)
	}
	sum := sha256.Sum256([]byte(eventID))
	return bridgeCallID(base64.RawURLEncoding.EncodeToString(sum[:9]))
}

func payloadOrNil(p json.RawMessage) any {
	if p == nil {
		return nil
	}
	return p
}

// isPermanent reports errors that retrying cannot fix.
func isPermanent(err error) bool {
	for _, s := range []error{ErrNotFound, ErrInvalidData, ErrAlreadyTerminal, ErrCancelPending,
		ErrIllegalTransition, ErrRevisionMismatch} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// ack acknowledges and deletes a message in one transaction.
func (e *WaitEngine) ack(ctx context.Context, stream, id string) error {
	_, err := e.s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAck(ctx, stream, e.group, id)
		p.XDel(ctx, stream, id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("taskflow: bridge ack: %w", err)
	}
	e.bridgeN.Add(1)
	return nil
}

func parseBridgeMessage(msg redis.XMessage) (bridgeMessage, error) {
	body, ok := msg.Values["body"].(string)
	if !ok {
		return bridgeMessage{}, errors.New("no body field")
	}
	var req bridgeMessage
	if err := json.Unmarshal([]byte(body), &req); err != nil {
		return bridgeMessage{}, fmt.Errorf("body is not JSON: %v", err)
	}
	if req.Topic == "" || req.CorrelationID == "" {
		return bridgeMessage{}, errors.New("topic and correlation_id are required")
	}
	if req.ID != "" {
		if err := validResumeID(req.ID); err != nil {
			return bridgeMessage{}, err
		}
	}
	if req.FlowID != "" {
		if _, err := uuid.Parse(req.FlowID); err != nil {
			return bridgeMessage{}, fmt.Errorf("flow_id %q is not a UUID", req.FlowID)
		}
	}
	return req, nil
}

// observeBridge reports one bridge message; herr is what handle returned
// (an error there means the message stays pending).
func observeBridge(ctx context.Context, o *observe.Observer, ev *observe.Bridge, herr *error) {
	if *herr != nil {
		ev.Outcome, ev.Err = "retry", *herr
	}
	ev.Duration = time.Since(ev.Start)
	o.Bridge(ctx, *ev)
}

// bridgeOutcome names what a message's handling did.
func bridgeOutcome(resumed int, err error) string {
	switch {
	case err != nil && isPermanent(err):
		return "failed"
	case err != nil:
		return "retry"
	case resumed > 0:
		return "resumed"
	}
	return "nomatch"
}
