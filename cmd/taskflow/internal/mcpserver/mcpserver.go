// Package mcpserver serves taskflow's agent tool over the Model Context
// Protocol, with the official Go SDK: the tools (one per action, or the
// combined one) with their annotations and output schemas, every flow of
// the caller's session as a resource (taskflow://flow/<id>, the flow and
// its latest events), and a notifications/resources/updated message when
// a subscribed flow changes.
//
// Tenancy: each MCP session acts as one taskflow Session, with the agent
// id of the configuration and a session id taken, in this order, from
// Config.SessionID, the HTTP header Config.SessionHeader (when the
// operator allows clients to name their session), the MCP session id
// (Mcp-Session-Id over streamable HTTP), or a random id given to the
// connection (stdio). A session sees, reads, subscribes to and changes
// only its own flows, exactly as agenttool.Tool guarantees.
package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/agenttool"
	"github.com/taskflow-dev/taskflow/internal/plainjson"
)

// Transports.
const (
	TransportStdio = "stdio"
	TransportHTTP  = "http"
)

// ResourcePrefix starts the URI of a flow resource: taskflow://flow/<id>.
const ResourcePrefix = "taskflow://flow/"

// ResourceEvents is how many of a flow's latest events its resource holds.
const ResourceEvents = 50

// DefaultAddr is where the HTTP transport listens unless Config.Addr says
// otherwise: loopback only.
const DefaultAddr = "127.0.0.1:7801"

// DefaultPath is the HTTP path of the MCP endpoint.
const DefaultPath = "/mcp"

// sessionProtocols are the protocol versions served: those with a
// session (initialize handshake, Mcp-Session-Id over HTTP), because the
// tenancy rests on it. The sessionless 2026-07-28 protocol is not offered.
var sessionProtocols = []string{"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"}

// Config configures the server.
type Config struct {
	// Manager is the flow space. Required.
	Manager *taskflow.Manager
	// AgentID is the agent id of every session. Required; no ':'.
	AgentID string
	// SessionID, when set, is the session id of every MCP session: the
	// host gives the server one conversation's identity (stdio spawned per
	// conversation, say).
	SessionID string
	// SessionHeader, when set, names an HTTP header by which a client
	// names its own session id (e.g. "Taskflow-Session"); a request
	// without it falls back to the MCP session id. Only for hosts that are
	// trusted to keep their users apart.
	SessionHeader string
	// Tools selects the tools: agenttool.PerAction (default, one tool
	// per action with its own annotations) or agenttool.Combined.
	Tools agenttool.Set
	// ToolOptions configure the tool (e.g. agenttool.WithTimerMaxHorizon).
	ToolOptions []agenttool.Option
	// Transport is TransportStdio (default) or TransportHTTP.
	Transport string
	// Addr is the HTTP transport's listen address (default DefaultAddr).
	Addr string
	// Stdin and Stdout replace os.Stdin and os.Stdout for the stdio
	// transport (tests); nil: the process's.
	Stdin  io.ReadCloser
	Stdout io.WriteCloser
	// Ready, when set, is called with the HTTP listener's address once it
	// listens.
	Ready func(addr string)
	// Logger logs the server's activity (default: discard).
	Logger *slog.Logger
	// Version is reported to clients as the server's version.
	Version string
	// MaxWatches caps the flows watched at once for subscribed sessions
	// (default DefaultMaxWatches); a subscription to one more is refused.
	// Every session subscribed to a flow shares its watch, and the
	// watches share one Redis subscription per shard (Manager.Watch).
	MaxWatches int
}

// DefaultMaxWatches is Config.MaxWatches's default.
const DefaultMaxWatches = 1000

// Server is an MCP server on a flow space.
type Server struct {
	cfg  Config
	tool *agenttool.Tool
	mcp  *mcp.Server

	mu       sync.Mutex
	sessions map[*mcp.ServerSession]string // generated session ids (stdio)
	watches  map[string]*watch             // by URI
	watchers map[*mcp.ServerSession]bool   // sessions with a subscription: their end is awaited
}

// watch streams one flow's events to the sessions subscribed to it.
type watch struct {
	cancel context.CancelFunc
	subs   map[*mcp.ServerSession]bool
}

// New returns a server for cfg, not yet connected to a transport.
func New(cfg Config) (*Server, error) {
	if cfg.Manager == nil {
		return nil, errors.New("mcpserver: no manager")
	}
	if err := checkID("agent id", cfg.AgentID); err != nil {
		return nil, err
	}
	if strings.Contains(cfg.AgentID, ":") {
		return nil, fmt.Errorf("mcpserver: the agent id %q contains ':'", cfg.AgentID)
	}
	if cfg.SessionID != "" {
		if err := checkID("session id", cfg.SessionID); err != nil {
			return nil, err
		}
	}
	if cfg.Tools != agenttool.Combined && cfg.Tools != agenttool.PerAction {
		return nil, fmt.Errorf("mcpserver: unknown tool set %d", cfg.Tools)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.MaxWatches <= 0 {
		cfg.MaxWatches = DefaultMaxWatches
	}
	s := &Server{
		cfg:      cfg,
		tool:     agenttool.New(cfg.Manager, cfg.ToolOptions...),
		sessions: map[*mcp.ServerSession]string{},
		watches:  map[string]*watch{},
		watchers: map[*mcp.ServerSession]bool{},
	}
	s.mcp = mcp.NewServer(&mcp.Implementation{Name: "taskflow", Title: "taskflow", Version: cfg.Version}, &mcp.ServerOptions{
		Instructions: "Durable multi-step flows that outlive the conversation. Each flow is also a resource, " +
			ResourcePrefix + "<id>: read it for its state and latest events, subscribe to it to hear when it changes.",
		Logger:                    cfg.Logger,
		Capabilities:              &mcp.ServerCapabilities{},
		SubscribeHandler:          s.subscribe,
		UnsubscribeHandler:        s.unsubscribe,
		SupportedProtocolVersions: sessionProtocols,
	})
	for _, t := range agenttool.MCPDefinitions(cfg.Tools) {
		s.mcp.AddTool(&mcp.Tool{
			Name:         t.Name,
			Title:        t.Title,
			Description:  t.Description,
			InputSchema:  t.InputSchema,
			OutputSchema: t.OutputSchema,
			Annotations: &mcp.ToolAnnotations{
				Title:           t.Annotations.Title,
				ReadOnlyHint:    t.Annotations.ReadOnlyHint,
				DestructiveHint: &t.Annotations.DestructiveHint,
				IdempotentHint:  t.Annotations.IdempotentHint,
				OpenWorldHint:   &t.Annotations.OpenWorldHint,
			},
		}, s.callTool)
	}
	s.mcp.AddResourceTemplate(&mcp.ResourceTemplate{
		Name:        "flow",
		Title:       "A flow of this session",
		Description: "A flow's current state (as the status action returns it) and its latest events, newest first.",
		MIMEType:    "application/json",
		URITemplate: ResourcePrefix + "{id}",
	}, s.readFlow)
	s.mcp.AddReceivingMiddleware(s.listResourcesMiddleware)
	return s, nil
}

// MCP returns the SDK server, to connect it to a transport of one's own
// (mcp.Server.Connect or Run).
func (s *Server) MCP() *mcp.Server { return s.mcp }

// Serve runs the server on cfg's transport until ctx ends or, on stdio,
// the client closes the connection.
func Serve(ctx context.Context, cfg Config) error {
	s, err := New(cfg)
	if err != nil {
		return err
	}
	defer s.stopWatches()
	switch cfg.Transport {
	case "", TransportStdio:
		t := &lineTransport{r: cfg.Stdin, w: cfg.Stdout, max: MaxFrameBytes}
		if t.r == nil {
			t.r = os.Stdin
		}
		if t.w == nil {
			t.w = nopCloser{os.Stdout}
		}
		err := s.mcp.Run(ctx, t)
		if errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) {
			return nil
		}
		return err
	case TransportHTTP:
		return s.serveHTTP(ctx)
	default:
		return fmt.Errorf("mcpserver: unknown transport %q (want %s or %s)", cfg.Transport, TransportStdio, TransportHTTP)
	}
}

func (s *Server) serveHTTP(ctx context.Context) error {
	addr := s.cfg.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("mcpserver: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(DefaultPath, mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s.mcp },
		&mcp.StreamableHTTPOptions{Logger: s.cfg.Logger, SessionTimeout: time.Hour}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if s.cfg.Ready != nil {
		s.cfg.Ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("mcpserver: %w", err)
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
		return nil
	}
}

func checkID(what, v string) error {
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("mcpserver: no %s", what)
	}
	return nil
}

// session returns the taskflow session of a request.
func (s *Server) session(ss *mcp.ServerSession, extra *mcp.RequestExtra) agenttool.Session {
	sess := agenttool.Session{AgentID: s.cfg.AgentID}
	switch {
	case s.cfg.SessionID != "":
		sess.SessionID = s.cfg.SessionID
	case s.cfg.SessionHeader != "" && extra != nil && strings.TrimSpace(extra.Header.Get(s.cfg.SessionHeader)) != "":
		sess.SessionID = strings.TrimSpace(extra.Header.Get(s.cfg.SessionHeader))
	case ss != nil && ss.ID() != "":
		sess.SessionID = ss.ID()
	case ss != nil:
		sess.SessionID = s.generatedSession(ss)
	}
	return sess
}

// generatedSession gives a connection without a session id (stdio, in
// memory) a random one for its lifetime.
func (s *Server) generatedSession(ss *mcp.ServerSession) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.sessions[ss]
	if !ok {
		id = "mcp-" + uuid.NewString()
		s.sessions[ss] = id
		go func() {
			_ = ss.Wait()
			s.mu.Lock()
			delete(s.sessions, ss)
			s.mu.Unlock()
		}()
	}
	return id
}

// callTool runs a tool call. A refusal (bad arguments, another session's
// flow, a move the flow's status does not allow) is a result with isError,
// so the model reads it and can correct itself.
func (s *Server) callTool(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	sess := s.session(req.Session, req.Extra)
	out, err := s.tool.CallTool(ctx, sess, req.Params.Name, req.Params.Arguments)
	if err != nil {
		return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: err.Error()}}}, nil
	}
	return &mcp.CallToolResult{
		Content:           []mcp.Content{&mcp.TextContent{Text: string(out)}},
		StructuredContent: out,
	}, nil
}

// flowID reads the id of a flow resource URI.
func flowID(uri string) (uuid.UUID, error) {
	rest, ok := strings.CutPrefix(uri, ResourcePrefix)
	if !ok {
		return uuid.Nil, fmt.Errorf("%q is not a flow resource (want %s<id>)", uri, ResourcePrefix)
	}
	id, err := uuid.Parse(rest)
	if err != nil || len(rest) != 36 {
		return uuid.Nil, fmt.Errorf("%q is not a flow resource: the id is not a UUID", uri)
	}
	return id, nil
}

// ownFlow checks that the flow of uri exists and belongs to sess. Another
// session's flow is reported exactly as a missing one would be, but for
// the word: the caller learns nothing of it.
func (s *Server) ownFlow(ctx context.Context, sess agenttool.Session, uri string) (uuid.UUID, error) {
	id, err := flowID(uri)
	if err != nil {
		return uuid.Nil, err
	}
	f, err := s.cfg.Manager.Get(ctx, id)
	switch {
	case errors.Is(err, taskflow.ErrNotFound):
		return uuid.Nil, mcp.ResourceNotFoundError(uri)
	case err != nil:
		return uuid.Nil, err
	case f.OwnerSessionKey != sess.OwnerKey():
		return uuid.Nil, fmt.Errorf("flow %s belongs to a different session: %w", id, agenttool.ErrForbidden)
	}
	return id, nil
}

// flowResource is the JSON of a flow resource.
type flowResource struct {
	Flow   json.RawMessage `json:"flow"`
	Events []resourceEvent `json:"events"`
}

// resourceEvent is an audit event as a resource shows it (no lease
// token). Its id is a JSON number like its revision, as the CLI's --json
// prints it (the library keeps it as a decimal string).
type resourceEvent struct {
	ID       json.Number     `json:"id"`
	Kind     string          `json:"kind"`
	Revision int64           `json:"revision"`
	Payload  json.RawMessage `json:"payload"`
	At       time.Time       `json:"at"`
}

func (s *Server) readFlow(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	sess := s.session(req.Session, req.Extra)
	uri := req.Params.URI
	id, err := s.ownFlow(ctx, sess, uri)
	if err != nil {
		return nil, err
	}
	// The status action gives the flow in the tool's shape, checking the
	// owner again.
	out, err := s.tool.Call(ctx, sess, json.RawMessage(`{"action":"status","flow_id":"`+id.String()+`"}`))
	if err != nil {
		return nil, err
	}
	var status struct {
		OK   bool            `json:"ok"`
		Flow json.RawMessage `json:"flow"`
	}
	if err := json.Unmarshal(out, &status); err != nil || !status.OK {
		return nil, mcp.ResourceNotFoundError(uri) // pruned meanwhile
	}
	evs, err := s.cfg.Manager.ListEvents(ctx, id, ResourceEvents)
	if err != nil {
		return nil, err
	}
	res := flowResource{Flow: status.Flow, Events: make([]resourceEvent, 0, len(evs))}
	for _, ev := range evs {
		res.Events = append(res.Events, resourceEvent{ID: json.Number(ev.ID), Kind: string(ev.Kind), Revision: ev.Revision, Payload: ev.Payload, At: ev.At})
	}
	// Not HTML-escaped: the goal and state read as written.
	body, err := plainjson.Marshal(res)
	if err != nil {
		return nil, err
	}
	return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: uri, MIMEType: "application/json", Text: string(body)}}}, nil
}

// listResourcesMiddleware answers resources/list with the session's own
// flows (the SDK lists only resources registered on the server, which are
// the same for every session).
func (s *Server) listResourcesMiddleware(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		lr, ok := req.(*mcp.ListResourcesRequest)
		if method != "resources/list" || !ok {
			return next(ctx, method, req)
		}
		sess := s.session(lr.Session, lr.Extra)
		flows, err := s.cfg.Manager.ListByOwner(ctx, sess.OwnerKey(), taskflow.WithLimit(agenttool.ListLimit))
		if err != nil {
			return nil, err
		}
		res := &mcp.ListResourcesResult{Resources: []*mcp.Resource{}}
		for _, f := range flows {
			if f.OwnerSessionKey != sess.OwnerKey() {
				continue
			}
			res.Resources = append(res.Resources, &mcp.Resource{
				URI:         ResourcePrefix + f.ID.String(),
				Name:        f.ID.String(),
				Title:       f.Goal,
				Description: fmt.Sprintf("%s flow %s, step %s", f.Status, f.ControllerID, f.CurrentStep),
				MIMEType:    "application/json",
			})
		}
		return res, nil
	}
}

// subscribe starts (or joins) the watch of a flow of the session; the SDK
// records the subscription once this returns nil.
func (s *Server) subscribe(ctx context.Context, req *mcp.SubscribeRequest) error {
	sess := s.session(req.Session, req.Extra)
	uri := req.Params.URI
	id, err := s.ownFlow(ctx, sess, uri)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.watches[uri]
	if !ok {
		if len(s.watches) >= s.cfg.MaxWatches {
			return fmt.Errorf("too many flows watched (%d, the server's limit): unsubscribe from one first", s.cfg.MaxWatches)
		}
		wctx, cancel := context.WithCancel(context.Background())
		events, err := s.cfg.Manager.Watch(wctx, id)
		if err != nil {
			cancel()
			return err
		}
		w = &watch{cancel: cancel, subs: map[*mcp.ServerSession]bool{}}
		s.watches[uri] = w
		go func() {
			for range events {
				_ = s.mcp.ResourceUpdated(wctx, &mcp.ResourceUpdatedNotificationParams{URI: uri})
			}
		}()
	}
	w.subs[req.Session] = true
	if ss := req.Session; !s.watchers[ss] {
		s.watchers[ss] = true
		go func() { // a session that goes away unsubscribes from everything
			_ = ss.Wait()
			s.dropSession(ss)
		}()
	}
	return nil
}

func (s *Server) unsubscribe(_ context.Context, req *mcp.UnsubscribeRequest) error {
	s.drop(req.Session, req.Params.URI)
	return nil
}

// drop ends a session's subscription to uri, and the watch with its last
// subscriber.
func (s *Server) drop(ss *mcp.ServerSession, uri string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.watches[uri]
	if !ok {
		return
	}
	delete(w.subs, ss)
	if len(w.subs) == 0 {
		w.cancel()
		delete(s.watches, uri)
	}
}

// dropSession ends every subscription of a session that went away.
func (s *Server) dropSession(ss *mcp.ServerSession) {
	s.mu.Lock()
	delete(s.watchers, ss)
	var uris []string
	for uri, w := range s.watches {
		if w.subs[ss] {
			uris = append(uris, uri)
		}
	}
	s.mu.Unlock()
	for _, uri := range uris {
		s.drop(ss, uri)
	}
}

func (s *Server) stopWatches() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for uri, w := range s.watches {
		w.cancel()
		delete(s.watches, uri)
	}
}

// Close ends the server's watches. Serve does it on return; a server
// connected by hand (MCP) should be closed when done.
func (s *Server) Close() { s.stopWatches() }
