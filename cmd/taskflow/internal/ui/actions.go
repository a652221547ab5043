package ui

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/taskflow-dev/taskflow"
)

// Limits of an action's form.
const (
	MaxReasonLen   = 500
	MaxOperatorLen = 100
)

// actionSpec describes one operator action.
type actionSpec struct {
	Name, Title, Button, Explain string
	NeedsReason                  bool
}

var actionSpecs = map[string]actionSpec{
	"cancel": {
		Name: "cancel", Title: "Cancel this flow", Button: "Cancel the flow",
		Explain: "The flow moves to cancelled now and its wait is cleared; a worker holding its lease " +
			"loses it at its next write. This cannot be undone.",
		NeedsReason: true,
	},
	"resume": {
		Name: "resume", Title: "Resume this flow", Button: "Resume the flow",
		Explain: "The waiting flow becomes running now, whatever it waits for, and goes back on its controller's ready queue.",
	},
	"requeue": {
		Name: "requeue", Title: "Requeue this flow", Button: "Requeue the flow",
		Explain: "The lease has expired: it is ended and the flow goes back on its controller's ready queue, " +
			"as the engine's next tick would do. A live lease is never taken away.",
	},
}

type confirmBody struct {
	Action   actionSpec
	Flow     *taskflow.Flow
	ID       string
	CSRF     string
	Operator string
	NeedName bool
	Error    string
}

// confirm is the page that asks before an action is taken.
func (s *Server) confirm(w http.ResponseWriter, r *http.Request) {
	spec, ok := actionSpecs[r.PathValue("action")]
	if !ok {
		s.fail(w, http.StatusNotFound, "no such page", nil)
		return
	}
	if s.cfg.ReadOnly {
		s.fail(w, http.StatusForbidden, "the dashboard is read-only", nil)
		return
	}
	f, ok := s.loadFlow(w, r)
	if !ok {
		return
	}
	if msg := pointless(spec, f); msg != "" {
		s.nothingToDo(w, f, msg)
		return
	}
	s.render(w, http.StatusOK, "confirm", page{Title: spec.Title, Nav: "flows", Body: confirmBody{
		Action: spec, Flow: f, ID: f.ID.String(), CSRF: s.csrf, NeedName: s.cfg.BasicUser == "",
	}})
}

// act takes an action after checking read-only mode, the request's origin
// and its CSRF token.
func (s *Server) act(w http.ResponseWriter, r *http.Request) {
	spec, ok := actionSpecs[r.PathValue("action")]
	if !ok {
		s.fail(w, http.StatusNotFound, "no such action", nil)
		return
	}
	if !s.formAllowed(w, r) {
		return
	}
	f, ok := s.loadFlow(w, r)
	if !ok {
		return
	}
	if msg := pointless(spec, f); msg != "" {
		s.nothingToDo(w, f, msg)
		return
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	operator := s.operator(r)
	again := func(msg string) {
		s.render(w, http.StatusBadRequest, "confirm", page{Title: spec.Title, Nav: "flows", Body: confirmBody{
			Action: spec, Flow: f, ID: f.ID.String(), CSRF: s.csrf, Operator: operator,
			NeedName: s.cfg.BasicUser == "", Error: msg,
		}})
	}
	switch {
	case operator == "":
		again("Say who you are: the audit log records the operator of every action.")
		return
	case len(operator) > MaxOperatorLen:
		again(fmt.Sprintf("The operator's name is over %d bytes.", MaxOperatorLen))
		return
	case spec.NeedsReason && reason == "":
		again("Give a reason: the audit log records it.")
		return
	case len(reason) > MaxReasonLen:
		again(fmt.Sprintf("The reason is over %d bytes.", MaxReasonLen))
		return
	}
	ctx := r.Context()
	var done string
	var err error
	switch spec.Name {
	case "cancel":
		_, err = s.m.Cancel(ctx, f.ID, auditOptions(operator, reason)...)
		done = "cancelled"
	case "resume":
		_, err = s.m.Resume(ctx, f.ID, nil, auditOptions(operator, reason)...)
		done = "resumed"
	case "requeue":
		var g *taskflow.Flow
		g, err = s.m.RequeueExpiredLease(ctx, f.ID)
		if err == nil && g == nil {
			again("The flow holds no expired lease (it was collected already, or its worker is alive).")
			return
		}
		done = "requeued"
	}
	if err != nil {
		// The flow moved meanwhile (another operator, its worker): say
		// what it is now, as for a flow that was so already.
		var te *taskflow.TransitionError
		if errors.As(err, &te) {
			if g, gerr := s.m.Get(ctx, f.ID); gerr == nil {
				if msg := pointless(spec, g); msg != "" {
					s.nothingToDo(w, g, msg)
					return
				}
			}
		}
		if errors.As(err, &te) || errors.Is(err, taskflow.ErrInvalidData) {
			again(err.Error())
			return
		}
		s.failRedis(w, spec.Name, err)
		return
	}
	s.log.Info("ui: action", "action", spec.Name, "flow", f.ID, "operator", operator, "reason", reason)
	http.Redirect(w, r, "/flows/"+f.ID.String()+"?done="+url.QueryEscape(done), http.StatusSeeOther)
}

// checkOrigin refuses a request that says it comes from another site:
// browsers send Sec-Fetch-Site and Origin on every POST.
func (s *Server) checkOrigin(r *http.Request) error {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return errors.New("a cross-site request")
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return fmt.Errorf("origin %q is not this dashboard", o)
		}
	}
	return nil
}

// pointless says plainly why an action cannot apply to a flow as it is,
// or returns "".
func pointless(spec actionSpec, f *taskflow.Flow) string {
	id := "Flow " + f.ID.String()
	switch spec.Name {
	case "cancel":
		if f.Status == taskflow.StatusCancelled {
			return id + " is already cancelled: there is nothing to cancel."
		}
		if f.Status.IsTerminal() {
			return id + " has " + string(f.Status) + ": a flow that has ended cannot be cancelled."
		}
	case "resume":
		if f.Status != taskflow.StatusWaiting {
			return id + " is " + string(f.Status) + ", not waiting: there is nothing to resume."
		}
	}
	return ""
}

// nothingToDo answers an action that cannot apply to the flow with 409
// and a plain sentence, not the form again.
func (s *Server) nothingToDo(w http.ResponseWriter, f *taskflow.Flow, msg string) {
	s.render(w, http.StatusConflict, "error", page{Title: "Nothing to do", Nav: "flows", Body: errorBody{Msg: msg, Flow: f.ID.String()}})
}

// formAllowed runs the checks every action's POST passes before it acts:
// the dashboard is not read-only, the request comes from its own origin,
// its form (at most 16 KiB) parses and carries the page's CSRF token. It
// answers the request itself and returns false when one fails.
func (s *Server) formAllowed(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.ReadOnly {
		s.fail(w, http.StatusForbidden, "the dashboard is read-only: no action is possible", nil)
		return false
	}
	if err := s.checkOrigin(r); err != nil {
		s.fail(w, http.StatusForbidden, "refused", err)
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		s.fail(w, http.StatusBadRequest, "bad form", err)
		return false
	}
	if !equal(r.PostFormValue("csrf"), s.csrf) {
		s.fail(w, http.StatusForbidden, "refused: the form's CSRF token is missing or stale (reload the page)", nil)
		return false
	}
	return true
}
