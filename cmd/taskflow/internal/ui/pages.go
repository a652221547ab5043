package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/childview"
	"github.com/taskflow-dev/taskflow/internal/plainjson"
)

// StatsFunc returns the overview's figures.
type StatsFunc func(ctx context.Context) (*Overview, error)

// Overview is what the overview page shows; the CLI fills it from
// taskflow's Stats.
type Overview struct {
	// Statuses counts the flows in each status, in the state machine's
	// order.
	Statuses []StatusCount `json:"statuses"`
	// Ready lists each controller's ready queue.
	Ready []ReadyQueue `json:"ready"`
	// ReadyStale counts the ready flows that have waited for a worker
	// longer than StaleAfter, over all the queues.
	ReadyStale int64         `json:"ready_stale"`
	StaleAfter time.Duration `json:"stale_after_ns"`
	// TickLag is how late the most overdue timer is (0 when none is due).
	TickLag time.Duration `json:"tick_lag_ns"`
	// LeasesHeld and LeasesExpired count live leases and leases past
	// their expiry that no tick has collected yet.
	LeasesHeld    int64 `json:"leases_held"`
	LeasesExpired int64 `json:"leases_expired"`
	// BridgeBacklog is the resume bridge's stream length, BridgePending
	// its delivered but unacknowledged messages.
	BridgeBacklog int64 `json:"bridge_backlog"`
	BridgePending int64 `json:"bridge_pending"`
	// EarlyEvents counts early events kept for a wait that has not begun.
	EarlyEvents int64 `json:"early_events"`
	// Joining counts parents waiting on their children.
	Joining int64 `json:"joining"`
	// Relay counts the work flows that ended left for their parents or
	// children and that is not done yet; RelayDue the part of it past its
	// grace, which an engine's tick does (the ending call died).
	Relay    int64 `json:"relay"`
	RelayDue int64 `json:"relay_due"`
	// Schedules counts the schedules, SchedulesPaused the paused ones,
	// SchedulesDue those past their next fire; ScheduleLag is how late
	// the most overdue one is.
	Schedules       int64         `json:"schedules"`
	SchedulesPaused int64         `json:"schedules_paused"`
	SchedulesDue    int64         `json:"schedules_due"`
	ScheduleLag     time.Duration `json:"schedule_lag_ns"`
}

// StatusCount is one status and how many flows are in it.
type StatusCount struct {
	Status string `json:"status"`
	Count  int64  `json:"count"`
}

// ReadyQueue is one controller's ready queue; Stale counts its flows
// that have waited longer than Overview.StaleAfter.
type ReadyQueue struct {
	Controller string        `json:"controller"`
	Depth      int64         `json:"depth"`
	OldestAge  time.Duration `json:"oldest_age_ns"`
	Stale      int64         `json:"stale"`
}

type page struct {
	Title    string
	Nav      string
	ReadOnly bool
	Refresh  int64
	Body     any
}

func (s *Server) render(w http.ResponseWriter, status int, name string, p page) {
	p.ReadOnly = s.cfg.ReadOnly
	p.Refresh = s.cfg.Refresh.Milliseconds()
	var buf bytes.Buffer
	if err := s.tmpl[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		s.log.Error("ui: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail renders an error page; err's text is escaped like any value.
func (s *Server) fail(w http.ResponseWriter, status int, msg string, err error) {
	if err != nil {
		if status >= 500 {
			s.log.Error("ui: "+msg, "err", err)
		}
		msg += ": " + err.Error()
	}
	s.render(w, status, "error", page{Title: http.StatusText(status), Body: errorBody{Msg: msg}})
}

// errorBody is an error page: the message and where to go back to.
type errorBody struct {
	Msg  string
	Flow string // the flow to go back to, if any
}

type overviewBody struct {
	Stats      *Overview
	Configured bool   // a stats source is configured
	Err        string // why there are no figures
	Hint       string // the flow space does not exist
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	b := overviewBody{Configured: s.cfg.Stats != nil}
	status := http.StatusOK
	if s.cfg.Stats != nil {
		st, err := s.cfg.Stats(r.Context())
		if why, ok := unreachable(err, s.cfg.Timeout); ok {
			s.log.Warn("ui: Redis is unreachable", "while", "reading the overview", "err", err)
			w.Header().Set("Retry-After", "5")
			b.Err, status = "Redis is unreachable ("+why+"): no figures until it answers again.", http.StatusServiceUnavailable
		} else if err != nil {
			b.Err, status = "Stats: "+err.Error(), http.StatusBadGateway
		}
		b.Stats = st
	}
	if status == http.StatusOK {
		b.Hint = s.spaceHint(r.Context())
	}
	s.render(w, status, "overview", page{Title: "Overview", Nav: "overview", Body: b})
}

// spaceHint is CheckSpace's complaint, if any: a mistyped --prefix
// serves an empty flow space that would otherwise look like an idle one.
func (s *Server) spaceHint(ctx context.Context) string {
	if s.cfg.CheckSpace == nil {
		return ""
	}
	if err := s.cfg.CheckSpace(ctx); err != nil {
		return err.Error()
	}
	return ""
}

func (s *Server) statsJSON(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Stats == nil {
		http.Error(w, "no stats", http.StatusNotFound)
		return
	}
	st, err := s.cfg.Stats(r.Context())
	if why, ok := unreachable(err, s.cfg.Timeout); ok {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "Redis is unreachable ("+why+")", http.StatusServiceUnavailable)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = plainjson.Encode(w, st, false)
}

type flowRow struct {
	ID, Status, Controller, Goal, Step, Owner string
	Wait, Due                                 string
	DueAt, DueIn                              string // Due's time, and how far it is
	Lease                                     string
	Updated                                   string
	// Attributes are the flow's search attributes, in name order.
	Attributes []kv
}

type flowsBody struct {
	// The filters, as the URL's query holds them: status ("" for any),
	// controller, owner and attribute ("name=value").
	Status, Controller, Owner, Attr string
	Statuses                        []string
	Rows                            []flowRow
	// Attributes says a row on the page has search attributes: the
	// table then has their column.
	Attributes bool
	Next       string
	NextURL    string
	Cursor     string
	FirstURL   string
	Hint       string
}

// flows lists flows one page at a time with the library's cursors, so a
// page of a space of millions of flows costs what a page of a small one
// does. The filters live in the URL's query, so a view can be shared:
// status alone (or nothing: running) lists by status, newest status
// change first; any of controller, owner and attr ("name=value", a search
// attribute) lists through Manager.Find, newest created first, with
// status as one more filter. A status given empty means any status.
func (s *Server) flows(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	b := flowsBody{
		Status: strings.TrimSpace(q.Get("status")), Controller: strings.TrimSpace(q.Get("controller")),
		Owner: strings.TrimSpace(q.Get("owner")), Attr: strings.TrimSpace(q.Get("attr")), Cursor: q.Get("cursor"),
	}
	for _, st := range taskflow.Statuses() {
		b.Statuses = append(b.Statuses, string(st))
	}
	find := b.Controller != "" || b.Owner != "" || b.Attr != ""
	if !find && !q.Has("status") {
		b.Status = string(taskflow.StatusRunning)
	}
	var st taskflow.FlowStatus
	if b.Status != "" {
		var err error
		if st, err = taskflow.ParseFlowStatus(b.Status); err != nil {
			s.fail(w, http.StatusBadRequest, "bad status", err)
			return
		}
	}
	opts := []taskflow.ListOption{taskflow.WithLimit(s.cfg.PageSize)}
	if b.Cursor != "" {
		opts = append(opts, taskflow.WithCursor(b.Cursor))
	}
	var pg *taskflow.FlowPage
	var err error
	switch {
	case find:
		pg, err = s.m.Find(r.Context(), taskflow.Filter{Status: st, Controller: b.Controller, Owner: b.Owner, Attribute: b.Attr}, opts...)
	case st != "":
		pg, err = s.m.ListByStatusPage(r.Context(), st, opts...)
	default:
		pg, err = s.m.ListRecent(r.Context(), nil, opts...)
	}
	if errors.Is(err, taskflow.ErrInvalidData) {
		s.fail(w, http.StatusBadRequest, "listing flows", err)
		return
	}
	if err != nil {
		s.failRedis(w, "listing flows", err)
		return
	}
	if len(pg.Flows) == 0 && b.Cursor == "" {
		b.Hint = s.spaceHint(r.Context())
	}
	now := s.cfg.Now()
	for _, f := range pg.Flows {
		row := flowRow{
			ID: f.ID.String(), Status: string(f.Status), Controller: f.ControllerID,
			Goal: clip(f.Goal, 120), Step: f.CurrentStep, Owner: f.OwnerSessionKey,
			Updated: ago(now, f.UpdatedAt),
		}
		row.Wait, row.Due = describeWait(f.Wait, now)
		// The list shows how far the due time is ("in 36h0m0s", "due 5s
		// ago") and the time itself on hover: a narrow column.
		var ok bool
		if row.DueAt, row.DueIn, ok = strings.Cut(row.Due, " ("); ok {
			row.DueIn = strings.TrimSuffix(row.DueIn, ")")
		}
		if f.Status == taskflow.StatusRunning {
			if l, err := s.m.LeaseOf(r.Context(), f.ID); err == nil && l != nil {
				row.Lease = l.WorkerID
				if !l.ExpiresAt.After(now) {
					row.Lease += " (expired)"
				}
			}
		}
		for _, n := range sortedKeys(f.Attributes) {
			row.Attributes = append(row.Attributes, kv{n, f.Attributes[n]})
		}
		b.Attributes = b.Attributes || len(row.Attributes) > 0
		b.Rows = append(b.Rows, row)
	}
	base := url.Values{"status": {b.Status}}
	for k, v := range map[string]string{"controller": b.Controller, "owner": b.Owner, "attr": b.Attr} {
		if v != "" {
			base.Set(k, v)
		}
	}
	b.FirstURL = "/flows?" + base.Encode()
	if pg.Next != "" {
		b.Next = pg.Next
		base.Set("cursor", pg.Next)
		b.NextURL = "/flows?" + base.Encode()
	}
	title := "Flows"
	if b.Status != "" {
		title += ": " + b.Status
	} else if !find {
		title += ": any status"
	}
	var named []string
	for _, f := range [][2]string{{"controller", b.Controller}, {"owner", b.Owner}, {"attribute", b.Attr}} {
		if f[1] != "" {
			named = append(named, f[0]+" "+f[1])
		}
	}
	if len(named) > 0 {
		title += " (" + strings.Join(named, ", ") + ")"
	}
	s.render(w, http.StatusOK, "flows", page{Title: title, Nav: "flows", Body: b})
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// search takes a flow id (any form uuid.Parse reads) to its page.
func (s *Server) search(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	id, err := uuid.Parse(q)
	if err != nil {
		s.fail(w, http.StatusBadRequest, fmt.Sprintf("%q is not a flow id (a UUID)", clip(q, 80)), nil)
		return
	}
	http.Redirect(w, r, "/flows/"+id.String(), http.StatusSeeOther)
}

type kv struct{ Key, Value string }

type eventView struct {
	ID, Kind, At, Lease string
	Revision            int64
	Payload             string
}

type stepView struct {
	RunID, Task, Status, Runtime, Result, Updated string
}

type flowBody struct {
	Flow       *taskflow.Flow
	ID         string
	Record     []kv
	State      string
	StateKeys  []kv
	Wait, Due  string
	WaitRaw    string
	Lease      *taskflow.Lease
	LeaseState string
	Steps      []stepView
	Events     []eventView
	CSRF       string
	CanCancel  bool
	CanResume  bool
	CanRequeue bool
	Notice     string
	// Parent is a child's parent id, "" for a flow that is no child;
	// ChildKey is the child's key among its parent's children.
	Parent, ChildKey string
	// Children is a parent's page of children, nil for a flow that never
	// started one.
	Children *childrenView
	// Explain says why the flow is where it is and what will move it.
	Explain explainView
	// Attributes are the flow's search attributes in name order, each
	// with the URL of the flows that share it.
	Attributes []attrView
}

// attrView is one search attribute on the flow page.
type attrView struct{ Name, Value, URL string }

// explainView is Manager.Explain's answer as the flow page shows it:
// its sentences, code, whether the flow is stuck, and its facts sorted
// by key.
type explainView struct {
	Text, Moves, Code string
	Stuck             bool
	Facts             []kv
}

// childrenView is one page of a parent's children and its join.
type childrenView struct {
	Total int
	Rows  []childRow
	// Join is the parent's join while it waits on its children;
	// JoinDeadline its deadline in words, "" when none.
	Join         *childview.Join
	JoinDeadline string
	// Cursor is this page's cursor ("" on the first); FirstURL and
	// NextURL lead to the first and the next page ("" after the last).
	Cursor, FirstURL, NextURL string
}

// childRow is one child in a parent's page.
type childRow struct {
	ID, Key, Status string
	// Ended tells that the parent has the child's outcome.
	Ended bool
}

func (s *Server) loadFlow(w http.ResponseWriter, r *http.Request) (*taskflow.Flow, bool) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		s.fail(w, http.StatusBadRequest, "not a flow id", err)
		return nil, false
	}
	f, err := s.m.Get(r.Context(), id)
	if errors.Is(err, taskflow.ErrNotFound) {
		s.fail(w, http.StatusNotFound, "no flow "+id.String(), nil)
		return nil, false
	}
	if err != nil {
		s.failRedis(w, "reading flow", err)
		return nil, false
	}
	return f, true
}

func (s *Server) flow(w http.ResponseWriter, r *http.Request) {
	f, ok := s.loadFlow(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	now := s.cfg.Now()
	b := flowBody{Flow: f, ID: f.ID.String(), CSRF: s.csrf, Notice: r.URL.Query().Get("done")}
	b.Record = []kv{
		{"status", string(f.Status)},
		{"revision", fmt.Sprint(f.Revision)},
		{"controller", f.ControllerID},
		{"goal", f.Goal},
		{"current step", f.CurrentStep},
		{"owner", f.OwnerSessionKey},
		{"requested by", f.RequesterOrigin},
		{"cancel requested", fmt.Sprint(f.CancelRequested)},
		{"created", stamp(f.CreatedAt) + " (" + ago(now, f.CreatedAt) + ")"},
		{"updated", stamp(f.UpdatedAt) + " (" + ago(now, f.UpdatedAt) + ")"},
	}
	if f.ParentID != uuid.Nil {
		b.Parent, b.ChildKey = f.ParentID.String(), f.ChildKey
	}
	for _, n := range sortedKeys(f.Attributes) {
		pair := n + "=" + f.Attributes[n]
		b.Attributes = append(b.Attributes, attrView{Name: n, Value: f.Attributes[n],
			URL: "/flows?" + url.Values{"status": {""}, "attr": {pair}}.Encode()})
	}
	b.State = pretty(f.State)
	b.StateKeys = topLevel(f.State)
	b.Wait, b.Due = describeWait(f.Wait, now)
	if len(f.Wait) > 0 {
		b.WaitRaw = pretty(f.Wait)
	}
	lease, err := s.m.LeaseOf(ctx, f.ID)
	if err != nil {
		s.failRedis(w, "reading lease", err)
		return
	}
	b.Lease = lease
	x, err := s.m.Explain(ctx, f.ID)
	if errors.Is(err, taskflow.ErrNotFound) {
		s.fail(w, http.StatusNotFound, "no flow "+b.ID+" (it was deleted while the page was read)", nil)
		return
	}
	if err != nil {
		s.failRedis(w, "explaining the flow", err)
		return
	}
	b.Explain = viewExplanation(x)
	if lease != nil {
		if lease.ExpiresAt.After(now) {
			b.LeaseState = "held, expires in " + lease.ExpiresAt.Sub(now).Round(time.Second).String()
		} else {
			b.LeaseState = "expired " + ago(now, lease.ExpiresAt) + ", not yet collected"
		}
	}
	steps, err := s.m.ListSteps(ctx, f.ID)
	if err != nil {
		s.failRedis(w, "reading steps", err)
		return
	}
	for _, st := range steps {
		b.Steps = append(b.Steps, stepView{
			RunID: st.RunID, Task: st.Task, Status: string(st.Status), Runtime: string(st.Runtime),
			Result: compact(st.Result), Updated: ago(now, st.UpdatedAt),
		})
	}
	events, err := s.m.ListEvents(ctx, f.ID, s.cfg.EventLimit)
	if err != nil {
		s.failRedis(w, "reading events", err)
		return
	}
	for _, ev := range events {
		b.Events = append(b.Events, viewEvent(ev))
	}
	if f.Children > 0 {
		kids, status, err := s.childrenPage(r, f, now)
		if err != nil {
			if status == http.StatusBadRequest {
				s.fail(w, status, "listing children", err)
			} else {
				s.failRedis(w, "listing children", err)
			}
			return
		}
		b.Children = kids
	}
	if !s.cfg.ReadOnly {
		b.CanCancel = !f.Status.IsTerminal()
		b.CanResume = f.Status == taskflow.StatusWaiting
		b.CanRequeue = lease != nil && !lease.ExpiresAt.After(now)
	}
	s.render(w, http.StatusOK, "flow", page{Title: "Flow " + b.ID, Nav: "flows", Body: b})
}

// childrenPage reads the page of f's children named by the request's
// children_cursor (PageSize of them) and, while f waits on them, its
// join. On error it says whether the request was bad (400: a malformed
// cursor) or Redis failed.
func (s *Server) childrenPage(r *http.Request, f *taskflow.Flow, now time.Time) (*childrenView, int, error) {
	ctx := r.Context()
	v := &childrenView{Total: f.Children, Cursor: r.URL.Query().Get("children_cursor")}
	opts := []taskflow.ListOption{taskflow.WithLimit(s.cfg.PageSize)}
	if v.Cursor != "" {
		opts = append(opts, taskflow.WithCursor(v.Cursor))
	}
	page, next, err := s.m.ListChildren(ctx, f.ID, opts...)
	if errors.Is(err, taskflow.ErrInvalidData) {
		return nil, http.StatusBadRequest, err
	}
	if err != nil {
		return nil, http.StatusBadGateway, err
	}
	for _, c := range page {
		row := childRow{ID: c.ID.String(), Key: c.Key, Status: string(c.Status), Ended: c.Ended}
		if row.Status == "" {
			row.Status = "gone"
		}
		v.Rows = append(v.Rows, row)
	}
	if v.Join, err = childview.Progress(ctx, s.m, f); err != nil {
		return nil, http.StatusBadGateway, err
	}
	if v.Join != nil {
		// The join read every child, after f: its count is the newer.
		v.Total = v.Join.Total
		if !v.Join.Deadline.IsZero() {
			v.JoinDeadline = dueIn(v.Join.Deadline, now)
		}
	}
	base := "/flows/" + f.ID.String()
	v.FirstURL = base + "#children"
	if next != "" {
		v.NextURL = base + "?" + url.Values{"children_cursor": {next}}.Encode() + "#children"
	}
	return v, http.StatusOK, nil
}

// viewExplanation is x for the page: its facts as text, sorted by key.
func viewExplanation(x *taskflow.Explanation) explainView {
	v := explainView{Text: x.Text, Moves: x.Moves, Code: x.Code, Stuck: x.Stuck}
	for k, val := range x.Facts {
		v.Facts = append(v.Facts, kv{k, fmt.Sprint(val)})
	}
	sort.Slice(v.Facts, func(i, j int) bool { return v.Facts[i].Key < v.Facts[j].Key })
	return v
}

func viewEvent(ev *taskflow.FlowEvent) eventView {
	return eventView{
		ID: ev.ID, Kind: string(ev.Kind), At: stamp(ev.At), Lease: ev.Lease,
		Revision: ev.Revision, Payload: pretty(ev.Payload),
	}
}

// describeWait says what a wait is and when it is due.
func describeWait(raw json.RawMessage, now time.Time) (what, due string) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", ""
	}
	var w struct {
		Kind          string `json:"kind"`
		At            string `json:"at"`
		Topic         string `json:"topic"`
		CorrelationID string `json:"correlation_id"`
		Need          int    `json:"need"`
		FailFast      bool   `json:"fail_fast"`
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		return clip(string(raw), 80), ""
	}
	switch w.Kind {
	case "timer":
		at, err := time.Parse(time.RFC3339Nano, w.At)
		if err != nil {
			return "timer " + w.At, ""
		}
		return "timer", dueIn(at, now)
	case "children":
		what = "children, need all"
		if w.Need > 0 {
			what = fmt.Sprintf("children, need %d", w.Need)
		}
		if w.FailFast {
			what += ", fail fast"
		}
		if at, err := time.Parse(time.RFC3339Nano, w.At); err == nil {
			due = dueIn(at, now)
		}
		return what, due
	case "external_event":
		return "event " + w.Topic + " / " + w.CorrelationID, ""
	case "":
		return clip(string(raw), 80), ""
	}
	return w.Kind, ""
}

// dueIn is a due time and how far it is: "<stamp> (in 1h0m0s)", or
// "<stamp> (due 5s ago)".
func dueIn(at, now time.Time) string {
	if at.After(now) {
		return stamp(at) + " (in " + at.Sub(now).Round(time.Second).String() + ")"
	}
	return stamp(at) + " (due " + ago(now, at) + ")"
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	if d < 0 {
		return "in " + (-d).Round(time.Second).String()
	}
	return d.Round(time.Second).String() + " ago"
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

func pretty(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return buf.String()
}

func compact(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	return clip(buf.String(), 200)
}

// topLevel lists an object state's keys with each value's raw JSON.
func topLevel(raw json.RawMessage) []kv {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil
	}
	out := make([]kv, 0, len(m))
	for k, v := range m {
		out = append(out, kv{k, string(v)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func (s *Server) parseTemplates() error {
	funcs := template.FuncMap{
		"breakable": breakable,
		"dur": func(d time.Duration) string {
			if d <= 0 {
				return "0s"
			}
			return d.Round(time.Millisecond).String()
		},
	}
	s.tmpl = map[string]*template.Template{}
	for _, name := range []string{"overview", "flows", "flow", "confirm", "error", "schedules", "schedule", "limits"} {
		t, err := template.New("").Funcs(funcs).ParseFS(assets, "assets/layout.html", "assets/"+name+".html")
		if err != nil {
			return fmt.Errorf("ui: template %s: %w", name, err)
		}
		s.tmpl[name] = t
	}
	return nil
}

// breakable escapes s for HTML and lets the browser break a line after
// the punctuation of identifiers ("billing/invoice-", "payments.",
// "cs_live_", "agent:"), never inside a word: a narrow column wraps
// "billing/invoice-|reconciliation", not "controlle|r".
func breakable(s string) template.HTML {
	var b strings.Builder
	for _, r := range s {
		b.WriteString(template.HTMLEscapeString(string(r)))
		if strings.ContainsRune("/-._:", r) {
			b.WriteString("<wbr>")
		}
	}
	return template.HTML(b.String()) // #nosec: every piece is escaped
}
