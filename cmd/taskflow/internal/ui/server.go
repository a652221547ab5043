// Package ui serves taskflow's operator dashboard: an overview of the
// flow space, flows by status or owner, one flow with why it is where it
// is (Manager.Explain), its state, wait, lease, steps, live audit log,
// parent and children (a page at a time, with the progress of a join on
// them), and the operator's actions (cancel with a reason, resume,
// requeue an expired lease); and the schedules, each with its next and
// recent fires (linking to their flows) and its actions (pause, resume,
// trigger); and the limits of concurrency keys, each with its flows in
// flight and its backlog, and the actions to set and delete one.
//
// Everything is rendered on the server with html/template, so every value
// read from Redis (goals, states, payloads: written by models and users)
// is escaped for its context; the little JavaScript there is (live
// refresh, the live audit log) writes text nodes only. Assets are
// embedded: nothing is fetched at run time.
//
// Safety: actions are POSTs that carry a CSRF token (a per-process random
// value the pages embed; a cross-site page cannot read it) and are refused
// when the request says it comes from another site. ReadOnly hides them
// and refuses every POST. CheckAddr refuses to serve a non-loopback
// address without a token or basic-auth credentials, and without them
// a request whose Host header is not a loopback name (or one of
// AllowedHosts) is refused: DNS rebinding gets nothing.
package ui

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/taskflow-dev/taskflow"
)

//go:embed assets
var assets embed.FS

// Config adjusts a Server. The zero value serves a read-write dashboard
// with no authentication, for a loopback address.
type Config struct {
	// ReadOnly hides the actions and refuses every POST with 403.
	ReadOnly bool
	// AllowedHosts are host names (any port) a request's Host header may
	// name besides the loopback ones (localhost, 127.0.0.0/8, ::1), when
	// neither Token nor basic-auth credentials are set; a request naming
	// another host is refused with 403, so a DNS-rebinding page cannot
	// drive the dashboard. With credentials every host is served.
	AllowedHosts []string
	// Token, when set, is required: as "Authorization: Bearer <token>", or
	// once as ?token=<token> on any page, which sets an HttpOnly cookie.
	Token string
	// BasicUser and BasicPassword, when BasicUser is set, require HTTP
	// basic authentication; the user name is the operator recorded in
	// the audit events of actions.
	BasicUser, BasicPassword string
	// Metrics, when not nil, is served at /metrics (Prometheus).
	Metrics http.Handler
	// Stats returns the overview's figures; nil shows the overview
	// without them.
	Stats StatsFunc
	// CheckSpace, when set, is asked by the overview and an empty list
	// whether the flow space exists; its error (e.g. "no flow space
	// \"typo\" …; did you mean --prefix demo?") is shown as a hint.
	CheckSpace func(ctx context.Context) error
	// Timeout bounds the Redis calls of one page (default 2 s, at most
	// 1 min); a page whose Redis does not answer within it, or refuses
	// the connection, is answered 503 "Redis is unreachable". It bounds
	// a stuck server's socket reads only when the client honours context
	// deadlines (go-redis ContextTimeoutEnabled).
	Timeout time.Duration
	// MaxStreams caps the live streams (a flow page's audit log) served
	// at once (default 100); one more is answered 503. Streams share one
	// Redis subscription per shard (Manager.Watch), so the cap bounds
	// goroutines and open HTTP responses, not Redis connections.
	MaxStreams int
	// PageSize is the number of flows per list page, and of children per
	// page of a flow's children (default 50, at most 500).
	PageSize int
	// EventLimit is the number of audit events a flow page shows, newest
	// first (default 200).
	EventLimit int
	// Refresh is how often the overview refreshes itself (default 2 s).
	Refresh time.Duration
	// Logger receives request failures (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock for ages and due times (default time.Now).
	Now func() time.Time
}

// Defaults and limits of Config.
const (
	DefaultPageSize   = 50
	MaxPageSize       = 500
	DefaultEventLimit = 200
	DefaultRefresh    = 2 * time.Second
	DefaultTimeout    = 2 * time.Second
	MaxTimeout        = time.Minute
	DefaultMaxStreams = 100
)

// Server is the dashboard's http.Handler.
type Server struct {
	m    *taskflow.Manager
	cfg  Config
	csrf string
	tmpl map[string]*template.Template
	mux  *http.ServeMux
	log  *slog.Logger
	// streams holds a token per live stream being served (MaxStreams).
	streams chan struct{}
}

// New returns the dashboard over m.
func New(m *taskflow.Manager, cfg Config) (*Server, error) {
	if m == nil {
		return nil, errors.New("ui: a Manager is required")
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = DefaultPageSize
	}
	cfg.PageSize = min(cfg.PageSize, MaxPageSize)
	if cfg.EventLimit <= 0 {
		cfg.EventLimit = DefaultEventLimit
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	cfg.Timeout = min(cfg.Timeout, MaxTimeout)
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	tok := make([]byte, 24)
	if _, err := rand.Read(tok); err != nil {
		return nil, fmt.Errorf("ui: csrf token: %w", err)
	}
	s := &Server{m: m, cfg: cfg, csrf: base64.RawURLEncoding.EncodeToString(tok), log: cfg.Logger,
		streams: make(chan struct{}, cfg.MaxStreams)}
	if err := s.parseTemplates(); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

// CheckAddr refuses to serve a non-loopback address without a token or
// basic-auth credentials: flow states are private data.
func CheckAddr(addr string, cfg Config) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("ui: address %q: %w", addr, err)
	}
	if cfg.Token != "" || cfg.BasicUser != "" {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("ui: %s is not a loopback address: set a token or basic-auth credentials to serve it", addr)
}

func (s *Server) routes() {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets/static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", s.overview)
	mux.HandleFunc("GET /api/stats", s.statsJSON)
	mux.HandleFunc("GET /flows", s.flows)
	mux.HandleFunc("GET /search", s.search)
	mux.HandleFunc("GET /flows/{id}", s.flow)
	mux.HandleFunc("GET /flows/{id}/live", s.live)
	mux.HandleFunc("GET /flows/{id}/{action}", s.confirm)
	mux.HandleFunc("POST /flows/{id}/{action}", s.act)
	mux.HandleFunc("GET /schedules", s.schedules)
	mux.HandleFunc("GET /schedules/{name...}", s.schedule)
	mux.HandleFunc("POST /schedules/{name...}", s.scheduleAct)
	mux.HandleFunc("GET /limits", s.limits)
	mux.HandleFunc("POST /limits", s.limitsAct)
	if s.cfg.Metrics != nil {
		mux.Handle("GET /metrics", s.cfg.Metrics)
	}
	s.mux = mux
}

// ServeHTTP authenticates the request, sets the security headers and
// dispatches it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	if !s.hostAllowed(r) {
		refuseHost(w, r)
		return
	}
	if !s.authenticate(w, r) {
		return
	}
	if !strings.HasSuffix(r.URL.Path, "/live") { // a stream bounds its own start
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
		defer cancel()
		r = r.WithContext(ctx)
	}
	s.mux.ServeHTTP(w, r)
}

const tokenCookie = "taskflow_ui_token"

// authenticate checks the token or basic-auth credentials, when set.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.BasicUser != "" {
		u, p, ok := r.BasicAuth()
		if ok && equal(u, s.cfg.BasicUser) && equal(p, s.cfg.BasicPassword) {
			return true
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="taskflow", charset="UTF-8"`)
		http.Error(w, "authentication required", http.StatusUnauthorized)
		return false
	}
	if s.cfg.Token == "" {
		return true
	}
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && equal(v, s.cfg.Token) {
		return true
	}
	if c, err := r.Cookie(tokenCookie); err == nil && equal(c.Value, s.cfg.Token) {
		return true
	}
	if q := r.URL.Query().Get("token"); q != "" && equal(q, s.cfg.Token) && r.Method == http.MethodGet {
		http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: s.cfg.Token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		u := *r.URL
		v := u.Query()
		v.Del("token")
		u.RawQuery = v.Encode()
		http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
		return false
	}
	http.Error(w, "authentication required: a token (?token=… once, or Authorization: Bearer …)", http.StatusUnauthorized)
	return false
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// operator is who the audit events of an action name: the basic-auth
// user, else the name the form gave.
func (s *Server) operator(r *http.Request) string {
	if u, _, ok := r.BasicAuth(); ok && s.cfg.BasicUser != "" {
		return u
	}
	return strings.TrimSpace(r.PostFormValue("operator"))
}
