package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// ResumeRequest asks the resume bridge to resume a flow waiting for an
// external event. FlowID may be uuid.Nil: then every flow waiting for
// Topic and CorrelationID is resumed (ResumeByCorrelation).
type ResumeRequest struct {
	FlowID        uuid.UUID `json:"flow_id"`
	Topic         string    `json:"topic"`
	CorrelationID string    `json:"correlation_id"`
	// Payload, when not nil, is merged into the state as resume_event.
	Payload any `json:"payload,omitempty"`
}

// bridgeMessage is the stream entry's "body" field.
type bridgeMessage struct {
	FlowID        string          `json:"flow_id"`
	Topic         string          `json:"topic"`
	CorrelationID string          `json:"correlation_id"`
	Payload       json.RawMessage `json:"payload,omitempty"`
}

// bridgeKey is the resume bridge's stream: <prefix>:{bridge}:resume.
func (k keyspace) bridge() string { return k.prefix + ":{bridge}:resume" }

// PublishResume puts a resume request on the resume bridge, a Redis stream
// read by every engine's RunResumeBridge through one consumer group. The
// request is durable once this returns: it is handled even if no engine
// runs yet, and a message an engine took but did not acknowledge (it
// died) is claimed by another. Topic and CorrelationID are required.
func (m *Manager) PublishResume(ctx context.Context, req ResumeRequest) error {
	if strings.TrimSpace(req.Topic) == "" || strings.TrimSpace(req.CorrelationID) == "" {
		return fmt.Errorf("%w: a resume request needs a topic and a correlation_id", ErrInvalidData)
	}
	if err := checkText("the topic", req.Topic, "the correlation_id", req.CorrelationID); err != nil {
		return err
	}
	payload, err := toJSON("payload", req.Payload)
	if err != nil {
		return err
	}
	if len(payload) > m.store.maxState {
		return fmt.Errorf("%w: payload is %d bytes, over the limit of %d", ErrInvalidData, len(payload), m.store.maxState)
	}
	msg := bridgeMessage{Topic: req.Topic, CorrelationID: req.CorrelationID, Payload: payload}
	if req.FlowID != uuid.Nil {
		msg.FlowID = req.FlowID.String()
	}
	body, err := marshalJSON(msg)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidData, err)
	}
	if err := m.store.checkLayout(ctx); err != nil {
		return err
	}
	if err := m.store.client.XAdd(ctx, &redis.XAddArgs{
		Stream: m.store.keys.bridge(),
		Values: []any{"body", string(body)},
	}).Err(); err != nil {
		return fmt.Errorf("taskflow: publish resume: %w", err)
	}
	return nil
}

// BridgeStats counts what this engine's bridge did since it started.
type BridgeStats struct {
	// Handled messages were acknowledged, whatever their outcome.
	Handled int64 `json:"handled"`
	// Resumed flows (a message may resume none).
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
		if err == nil {
			err = e.readOnce(ctx, stream)
		}
		if ctx.Err() != nil {
			break
		}
		if err != nil {
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
	var ev *BridgeEvent
	if o := e.s.obs; o != nil && o.Bridge != nil {
		ev = &BridgeEvent{MessageID: msg.ID, Claimed: claimed, Start: time.Now()}
		defer observeBridge(ctx, o, ev, &herr)
	}
	req, perr := parseBridgeMessage(msg)
	if perr != nil {
		if ev != nil {
			ev.Outcome, ev.Err = "malformed", perr
		}
		e.bridgeB.Add(1)
		e.log.Warn("taskflow: dropping a malformed resume request", "id", msg.ID, "err", perr)
		return e.ack(ctx, stream, msg.ID)
	}
	var resumed int
	var err error
	// The message id names the resume: a message handled again (its ack
	// was lost, or its engine died before acking) does not resume a flow
	// that waits again on the same correlation id.
	mut := mutation{call: bridgeCallID(msg.ID), callSet: true, internal: true}
	var fs []*Flow
	if req.FlowID != "" {
		id, _ := uuid.Parse(req.FlowID)
		var f *Flow
		f, err = e.m.tryResumeExternal(ctx, id, req.Topic, req.CorrelationID, payloadOrNil(req.Payload), bridgeEventPrefix+msg.ID, mut)
		if f != nil {
			resumed = 1
			fs = []*Flow{f}
		}
	} else {
		fs, err = e.m.resumeByCorrelation(ctx, req.Topic, req.CorrelationID, payloadOrNil(req.Payload), bridgeEventPrefix+msg.ID, mut)
		resumed = len(fs)
	}
	if ev != nil {
		ev.FlowID, _ = uuid.Parse(req.FlowID)
		ev.Topic, ev.Resumed, ev.Err = req.Topic, fs, err
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
	if req.FlowID != "" {
		if _, err := uuid.Parse(req.FlowID); err != nil {
			return bridgeMessage{}, fmt.Errorf("flow_id %q is not a UUID", req.FlowID)
		}
	}
	return req, nil
}
