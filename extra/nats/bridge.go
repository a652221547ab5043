// Package natsbridge carries the original nexo-taskflow's resume messages
// from NATS to taskflow's durable resume bridge, so the original's
// publishers work unchanged after a move to taskflow.
//
// The original publishes each resume on the subject "taskflow.resume" as
// its broker's JSON envelope,
//
//	{"id": <uuid>, "timestamp": <RFC 3339>, "topic": "taskflow.resume",
//	 "source": <string>, "session_id": <uuid or null>,
//	 "payload": {"flow_id": <uuid>, "topic": <string>,
//	             "correlation_id": <string>, "payload": <any JSON>}}
//
// and a Bridge hands each one to Manager.PublishResume (the Redis stream
// every WaitEngine's RunResumeBridge reads), where it is durable.
//
// Delivery depends on the NATS server:
//
//   - With JetStream, the Bridge reads from a durable pull consumer on a
//     stream that captures the subject (it creates one, work-queue
//     retention, when none does), and acknowledges a message only after
//     the Redis stream has it. The original's plain publishes are stored by
//     the stream, so nothing is lost while no bridge runs, or when a bridge
//     dies between receiving a message and handing it off: the message is
//     delivered again after the ack wait. A bridge that dies after the
//     hand-off but before its acknowledgement reaches NATS hands the
//     message off twice; the second adds nothing, since the request is
//     named by its message (see below). Several bridges may share the
//     consumer.
//   - With core NATS only, delivery is at most once, as in the original:
//     messages published while no bridge is subscribed, messages a bridge
//     received but had not handed off when it died, and messages dropped
//     by the NATS client when the bridge falls too far behind (a slow
//     consumer: more than 500,000 messages or 64 MB pending) are lost. Bridges join one queue group, so each message is
//     handed off by one of them.
//
// Each hand-off carries the message's id as the resume request's id
// (taskflow.ResumeRequest.ID): the envelope's "id", else the message's
// Nats-Msg-Id header, else (JetStream) the message's stream and sequence;
// a core NATS message with neither gets one id for all its attempts. A
// message handed off again, or published again by its publisher with the
// same id, so resumes a wait at most once (within the flow space's
// memory of request ids, taskflow.WithResumeIDMemory).
package natsbridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/taskflow-dev/taskflow"
)

// Defaults of a Bridge.
const (
	// DefaultSubject is the original's resume subject.
	DefaultSubject = "taskflow.resume"
	// DefaultStream is the JetStream stream the Bridge creates when no
	// stream captures the subject.
	DefaultStream = "TASKFLOW_RESUME"
	// DefaultDurable names the durable consumer (and, on core NATS, the
	// queue group) the bridges share.
	DefaultDurable = "taskflow-resume-bridge"
	// DefaultAckWait is how long JetStream waits for an acknowledgement
	// before delivering a message again.
	DefaultAckWait = 30 * time.Second
	// DefaultMaxAge is how long the created stream keeps a message no
	// bridge took.
	DefaultMaxAge = 7 * 24 * time.Hour
)

// retryPause is the wait before a message whose hand-off failed (Redis
// unreachable) is tried again.
const retryPause = time.Second

// Mode is how the Bridge reads from NATS.
type Mode string

// The modes of a Bridge.
const (
	// ModeAuto uses JetStream when the server has it, core NATS otherwise.
	ModeAuto Mode = "auto"
	// ModeJetStream requires JetStream.
	ModeJetStream Mode = "jetstream"
	// ModeCore subscribes with core NATS (at most once), even when the
	// server has JetStream.
	ModeCore Mode = "core"
)

// Publisher takes resume requests durably; *taskflow.Manager is one.
type Publisher interface {
	PublishResume(ctx context.Context, req taskflow.ResumeRequest) error
}

// Stats counts what a Bridge did since it started.
type Stats struct {
	// Received messages, whatever became of them.
	Received int64 `json:"received"`
	// HandedOff messages are in the Redis resume stream.
	HandedOff int64 `json:"handed_off"`
	// Malformed messages were logged and dropped.
	Malformed int64 `json:"malformed"`
	// Retried counts hand-offs that failed and were tried again.
	Retried int64 `json:"retried"`
}

// Bridge moves resume messages from NATS to a Publisher.
type Bridge struct {
	nc      *nats.Conn
	pub     Publisher
	subject string
	stream  string
	durable string
	ackWait time.Duration
	maxAge  time.Duration
	mode    Mode
	log     *slog.Logger

	received, handedOff, malformed, retried atomic.Int64
	// beforeHandoff, when set (tests), runs after a message was received
	// and parsed, before it is handed off.
	beforeHandoff func()
	// onReady, when set (tests), runs once the consumer or subscription
	// is in place.
	onReady func()
}

// Option configures a Bridge.
type Option func(*Bridge)

// WithSubject sets the subject (default "taskflow.resume").
func WithSubject(s string) Option { return func(b *Bridge) { b.subject = s } }

// WithStream sets the name of the stream created when none captures the
// subject (default "TASKFLOW_RESUME"). A stream that already captures the
// subject is used whatever its name.
func WithStream(name string) Option { return func(b *Bridge) { b.stream = name } }

// WithDurable sets the durable consumer's name, also the core NATS queue
// group (default "taskflow-resume-bridge").
func WithDurable(name string) Option { return func(b *Bridge) { b.durable = name } }

// WithAckWait sets how long JetStream waits for an acknowledgement before
// it delivers a message again (default 30 s; at least 100 ms).
func WithAckWait(d time.Duration) Option {
	return func(b *Bridge) {
		if d >= 100*time.Millisecond {
			b.ackWait = d
		}
	}
}

// WithMaxAge sets how long a stream the Bridge creates keeps messages
// (default 7 days).
func WithMaxAge(d time.Duration) Option {
	return func(b *Bridge) {
		if d > 0 {
			b.maxAge = d
		}
	}
}

// WithMode sets how the Bridge reads (default ModeAuto).
func WithMode(m Mode) Option { return func(b *Bridge) { b.mode = m } }

// WithLogger sets where the Bridge logs (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(b *Bridge) {
		if l != nil {
			b.log = l
		}
	}
}

// New returns a Bridge from nc to pub. It does not close nc.
func New(nc *nats.Conn, pub Publisher, opts ...Option) (*Bridge, error) {
	if nc == nil || pub == nil {
		return nil, fmt.Errorf("%w: a NATS connection and a publisher are required", taskflow.ErrInvalidData)
	}
	b := &Bridge{
		nc: nc, pub: pub, subject: DefaultSubject, stream: DefaultStream, durable: DefaultDurable,
		ackWait: DefaultAckWait, maxAge: DefaultMaxAge, mode: ModeAuto, log: slog.Default(),
	}
	for _, o := range opts {
		if o != nil {
			o(b)
		}
	}
	switch b.mode {
	case ModeAuto, ModeJetStream, ModeCore:
	default:
		return nil, fmt.Errorf("%w: unknown NATS bridge mode %q (want auto, jetstream or core)", taskflow.ErrInvalidData, b.mode)
	}
	if strings.TrimSpace(b.subject) == "" || strings.TrimSpace(b.durable) == "" || strings.TrimSpace(b.stream) == "" {
		return nil, fmt.Errorf("%w: the subject, stream and durable names cannot be empty", taskflow.ErrInvalidData)
	}
	return b, nil
}

// Stats returns the Bridge's counters.
func (b *Bridge) Stats() Stats {
	return Stats{Received: b.received.Load(), HandedOff: b.handedOff.Load(), Malformed: b.malformed.Load(), Retried: b.retried.Load()}
}

// Run moves messages until ctx ends, then returns ctx's error. It returns
// another error when it cannot start: ModeJetStream on a server without
// JetStream, a stream or consumer it cannot create, a subscription
// refused.
func (b *Bridge) Run(ctx context.Context) error {
	mode := b.mode
	js, err := jetstream.New(b.nc)
	if err != nil {
		return fmt.Errorf("natsbridge: %w", err)
	}
	if mode != ModeCore {
		if _, err := js.AccountInfo(ctx); err != nil {
			if !noJetStream(err) {
				return fmt.Errorf("natsbridge: asking for JetStream: %w", err)
			}
			if mode == ModeJetStream {
				return fmt.Errorf("natsbridge: the NATS server has no JetStream (start it with -js, or use the core mode): %w", err)
			}
			b.log.Warn("natsbridge: the NATS server has no JetStream; reading with core NATS, at most once (messages published while no bridge listens, or received by a bridge that dies, are lost)",
				"subject", b.subject)
			mode = ModeCore
		}
	}
	if mode == ModeCore {
		return b.runCore(ctx)
	}
	return b.runJetStream(ctx, js)
}

// noJetStream reports the errors of a server or account without JetStream.
func noJetStream(err error) bool {
	return errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) ||
		errors.Is(err, nats.ErrNoResponders)
}

// consumer finds the stream that captures the subject (creating one when
// none does) and creates or updates the durable consumer on it.
func (b *Bridge) consumer(ctx context.Context, js jetstream.JetStream) (jetstream.Consumer, string, error) {
	name, err := js.StreamNameBySubject(ctx, b.subject)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name: b.stream, Subjects: []string{b.subject}, Retention: jetstream.WorkQueuePolicy,
			Storage: jetstream.FileStorage, MaxAge: b.maxAge,
			Description: "taskflow resume requests from the original's publishers, until a bridge hands them to Redis",
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			err = nil // another bridge made it meanwhile
		}
		name = b.stream
	}
	if err != nil {
		return nil, "", fmt.Errorf("natsbridge: the stream for %s: %w", b.subject, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, name, jetstream.ConsumerConfig{
		Durable: b.durable, AckPolicy: jetstream.AckExplicitPolicy, AckWait: b.ackWait,
		FilterSubject: b.subject, DeliverPolicy: jetstream.DeliverAllPolicy, MaxDeliver: -1,
		Description: "taskflow resume bridge: acknowledged once the message is in Redis",
	})
	if err != nil {
		return nil, "", fmt.Errorf("natsbridge: the consumer %s on stream %s: %w", b.durable, name, err)
	}
	return cons, name, nil
}

func (b *Bridge) runJetStream(ctx context.Context, js jetstream.JetStream) error {
	cons, stream, err := b.consumer(ctx, js)
	if err != nil {
		return err
	}
	// Few messages are buffered: each one is ack-pending from the moment
	// it is pulled, and waits for the Redis hand-off of those before it.
	it, err := cons.Messages(jetstream.PullMaxMessages(16))
	if err != nil {
		return fmt.Errorf("natsbridge: reading %s: %w", stream, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	if b.onReady != nil {
		b.onReady()
	}
	b.log.Info("natsbridge: reading resume messages with JetStream", "subject", b.subject, "stream", stream, "durable", b.durable)
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return fmt.Errorf("natsbridge: the consumer stopped: %w", err)
			}
			b.log.Warn("natsbridge: reading a message failed; going on", "err", err)
			continue
		}
		b.handleJetStream(ctx, msg)
	}
}

// handleJetStream hands one message off and settles it with JetStream:
// acknowledged once Redis has it, terminated when malformed, and given
// back for a later delivery when Redis failed.
func (b *Bridge) handleJetStream(ctx context.Context, msg jetstream.Msg) {
	b.received.Add(1)
	req, err := ParseMessage(msg.Data())
	if err != nil {
		b.malformed.Add(1)
		b.log.Warn("natsbridge: dropping a malformed resume message", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	if req.ID == "" {
		if h := msg.Headers().Get(nats.MsgIdHdr); h != "" {
			req.ID = requestID(h)
		} else if md, err := msg.Metadata(); err == nil {
			req.ID = requestID(fmt.Sprintf("jetstream:%s:%d", md.Stream, md.Sequence.Stream))
		}
	}
	if b.beforeHandoff != nil {
		b.beforeHandoff()
	}
	if err := b.pub.PublishResume(ctx, req); err != nil {
		if errors.Is(err, taskflow.ErrInvalidData) {
			b.malformed.Add(1)
			b.log.Warn("natsbridge: dropping a resume message the bridge refuses", "flow_id", req.FlowID, "err", err)
			_ = msg.Term()
			return
		}
		b.retried.Add(1)
		b.log.Warn("natsbridge: handing a resume message to Redis failed; it will be delivered again", "flow_id", req.FlowID, "err", err)
		_ = msg.NakWithDelay(retryPause)
		return
	}
	b.handedOff.Add(1)
	// Redis has it: acknowledge and wait for the server to confirm, so a
	// lost acknowledgement is at worst a second, harmless hand-off.
	ackCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := msg.DoubleAck(ackCtx); err != nil {
		b.log.Warn("natsbridge: acknowledging a handed-off message failed; it may be handed off again (it adds nothing)", "flow_id", req.FlowID, "err", err)
	}
}

func (b *Bridge) runCore(ctx context.Context) error {
	// An asynchronous subscription: messages wait in the client's pending
	// list (up to 500,000 or 64 MB, then the client drops them as a slow
	// consumer) while the handler hands them off one at a time.
	sub, err := b.nc.QueueSubscribe(b.subject, b.durable, func(msg *nats.Msg) { b.handleCore(ctx, msg) })
	if err != nil {
		return fmt.Errorf("natsbridge: subscribing to %s: %w", b.subject, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := b.nc.FlushTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("natsbridge: subscribing to %s: %w", b.subject, err)
	}
	if b.onReady != nil {
		b.onReady()
	}
	b.log.Info("natsbridge: reading resume messages with core NATS (at most once)", "subject", b.subject, "queue", b.durable)
	<-ctx.Done()
	return ctx.Err()
}

// handleCore hands one core NATS message off, trying again while Redis
// fails and ctx lasts: the message exists nowhere else.
func (b *Bridge) handleCore(ctx context.Context, msg *nats.Msg) {
	b.received.Add(1)
	req, err := ParseMessage(msg.Data)
	if err != nil {
		b.malformed.Add(1)
		b.log.Warn("natsbridge: dropping a malformed resume message", "subject", msg.Subject, "err", err)
		return
	}
	if req.ID == "" {
		// One id for every attempt: an attempt that failed after Redis
		// took the request must not add it again.
		req.ID = uuid.NewString()
		if h := msg.Header.Get(nats.MsgIdHdr); h != "" {
			req.ID = requestID(h)
		}
	}
	if b.beforeHandoff != nil {
		b.beforeHandoff()
	}
	for {
		err := b.pub.PublishResume(ctx, req)
		switch {
		case err == nil:
			b.handedOff.Add(1)
			return
		case errors.Is(err, taskflow.ErrInvalidData):
			b.malformed.Add(1)
			b.log.Warn("natsbridge: dropping a resume message the bridge refuses", "flow_id", req.FlowID, "err", err)
			return
		case ctx.Err() != nil:
			b.log.Error("natsbridge: stopping with a resume message not handed off (core NATS: it is lost)", "flow_id", req.FlowID)
			return
		}
		b.retried.Add(1)
		b.log.Warn("natsbridge: handing a resume message to Redis failed; trying again", "flow_id", req.FlowID, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(retryPause):
		}
	}
}

// envelope is the original broker's message; Payload holds the resume.
type envelope struct {
	ID      json.RawMessage `json:"id"`
	Payload json.RawMessage `json:"payload"`
	FlowID  *string         `json:"flow_id"`
}

// requestID turns a message's id into a resume request id: a UUID as it
// is, anything else as "nats-" and 32 hex digits of its SHA-256 (a
// request id is at most 64 bytes of a few characters).
func requestID(s string) string {
	if id, err := uuid.Parse(s); err == nil {
		return id.String()
	}
	sum := sha256.Sum256([]byte(s))
	return "nats-" + hex.EncodeToString(sum[:16])
}

// resume is the original's resume payload.
type resume struct {
	FlowID        *string         `json:"flow_id"`
	Topic         string          `json:"topic"`
	CorrelationID string          `json:"correlation_id"`
	Payload       json.RawMessage `json:"payload"`
}

// ParseMessage reads one message body: the original broker's envelope
// around {flow_id, topic, correlation_id, payload}, or that inner object
// alone. The envelope's id, when present, becomes the request's ID (see
// the package doc; the inner object alone has none). flow_id is required (a UUID, also in its braced or URN form), so
// are topic and correlation_id; payload is optional (a JSON null is none).
// Anything else is an error wrapping taskflow.ErrInvalidData.
func ParseMessage(body []byte) (taskflow.ResumeRequest, error) {
	bad := func(format string, a ...any) (taskflow.ResumeRequest, error) {
		return taskflow.ResumeRequest{}, fmt.Errorf("%w: %s", taskflow.ErrInvalidData, fmt.Sprintf(format, a...))
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return bad("the message is not a JSON object: %v", err)
	}
	inner := json.RawMessage(body)
	if env.FlowID == nil { // the envelope: the resume is its payload
		if len(env.Payload) == 0 || string(env.Payload) == "null" {
			return bad("the envelope has no payload")
		}
		inner = env.Payload
	}
	var r resume
	if err := json.Unmarshal(inner, &r); err != nil {
		return bad("the payload is not a resume object: %v", err)
	}
	if r.FlowID == nil {
		return bad("flow_id is required")
	}
	id, err := uuid.Parse(strings.TrimSpace(*r.FlowID))
	if err != nil || id == uuid.Nil {
		return bad("flow_id %q is not a UUID", *r.FlowID)
	}
	if strings.TrimSpace(r.Topic) == "" || strings.TrimSpace(r.CorrelationID) == "" {
		return bad("topic and correlation_id cannot be empty")
	}
	req := taskflow.ResumeRequest{FlowID: id, Topic: r.Topic, CorrelationID: r.CorrelationID}
	if env.FlowID == nil && len(env.ID) > 0 && string(env.ID) != "null" {
		var s string
		if json.Unmarshal(env.ID, &s) != nil {
			s = string(env.ID) // a number, or another JSON value: its text
		}
		if s != "" {
			req.ID = requestID(s)
		}
	}
	if len(r.Payload) > 0 && string(r.Payload) != "null" {
		req.Payload = r.Payload
	}
	return req, nil
}
