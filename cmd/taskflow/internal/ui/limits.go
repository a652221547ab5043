package ui

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/statsview"
)

// The limits page (GET /limits): every concurrency key with a limit, its
// flows in flight, its limits and its backlog, and the operator's
// actions: set a key's limit (a form, pre-filled from a row's "edit"
// link) and delete one, each a POST to /limits carrying the CSRF token,
// refused in read-only mode and from another site, like the flows'
// actions. A change holds from the next claim (Manager.SetKeyLimit).

// limitRow is one key on the limits page.
type limitRow struct {
	Key                             string
	InFlight, Backlog, Weight       int
	Concurrency, Rate, Burst, Usage string
	// Full: the key admits no more flows (its flows in flight reach its
	// concurrency limit).
	Full bool
	// EditURL pre-fills the form with the key's limit.
	EditURL string
}

// limitForm is the set form's values, as typed.
type limitForm struct {
	Key, Concurrency, Rate, Per, Burst, Weight string
}

type limitsBody struct {
	Rows     []limitRow
	Form     limitForm
	CSRF     string
	ReadOnly bool
	Notice   string
	Error    string
}

func (s *Server) limits(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	notice := ""
	switch key := q.Get("key"); q.Get("done") {
	case "set":
		notice = "The limit of " + key + " is set: it holds from the next claim."
	case "deleted":
		notice = "The limit of " + key + " is deleted: its flows are claimed without bound."
	}
	s.limitsPage(w, r, http.StatusOK, limitForm{}, notice, "")
}

// limitsPage renders the limits page with the form's values, a notice
// or an error.
func (s *Server) limitsPage(w http.ResponseWriter, r *http.Request, status int, form limitForm, notice, msg string) {
	list, err := s.m.KeyLimits(r.Context())
	if err != nil {
		s.failRedis(w, "the limits", err)
		return
	}
	edit := r.URL.Query().Get("edit")
	b := limitsBody{Form: form, CSRF: s.csrf, ReadOnly: s.cfg.ReadOnly, Notice: notice, Error: msg}
	for _, u := range list {
		row := limitRow{Key: u.Key, InFlight: u.InFlight, Backlog: u.Backlog, Weight: u.Weight,
			Concurrency: statsview.Bound(u.Concurrency), Rate: statsview.Rate(u.KeyLimit), Burst: "-",
			Full:    u.Concurrency > 0 && u.InFlight >= u.Concurrency,
			EditURL: "/limits?" + url.Values{"edit": {u.Key}}.Encode() + "#set-limit"}
		if u.Rate > 0 {
			row.Burst = strconv.Itoa(u.Burst)
		}
		row.Usage = strconv.Itoa(u.InFlight)
		if u.Concurrency > 0 {
			row.Usage += " of " + strconv.Itoa(u.Concurrency)
		}
		b.Rows = append(b.Rows, row)
		if edit == u.Key && form == (limitForm{}) {
			b.Form = formOf(u.KeyLimit)
		}
	}
	s.render(w, status, "limits", page{Title: "Limits", Nav: "limits", Body: b})
}

// formOf is the set form filled with l.
func formOf(l taskflow.KeyLimit) limitForm {
	f := limitForm{Key: l.Key, Weight: strconv.Itoa(l.Weight)}
	if l.Concurrency > 0 {
		f.Concurrency = strconv.Itoa(l.Concurrency)
	}
	if l.Rate > 0 {
		f.Rate, f.Per, f.Burst = strconv.Itoa(l.Rate), statsview.Per(l.Per), strconv.Itoa(l.Burst)
	}
	return f
}

// limitsAct sets or deletes a key's limit (form field "do": set or
// delete) after the checks of every action.
func (s *Server) limitsAct(w http.ResponseWriter, r *http.Request) {
	if !s.formAllowed(w, r) {
		return
	}
	ctx := r.Context()
	form := limitForm{}
	for _, x := range []struct {
		name string
		p    *string
	}{{"key", &form.Key}, {"concurrency", &form.Concurrency}, {"rate", &form.Rate}, {"per", &form.Per},
		{"burst", &form.Burst}, {"weight", &form.Weight}} {
		*x.p = strings.TrimSpace(r.PostFormValue(x.name))
	}
	if form.Key == "" {
		s.limitsPage(w, r, http.StatusBadRequest, form, "", "Name the key.")
		return
	}
	var done string
	switch r.PostFormValue("do") {
	case "set":
		l, msg := parseLimit(form)
		if msg != "" {
			s.limitsPage(w, r, http.StatusBadRequest, form, "", msg)
			return
		}
		if err := s.m.SetKeyLimit(ctx, l); err != nil {
			if errors.Is(err, taskflow.ErrInvalidData) {
				s.limitsPage(w, r, http.StatusBadRequest, form, "", strings.TrimPrefix(err.Error(), "invalid data: "))
				return
			}
			s.failRedis(w, "set the limit", err)
			return
		}
		done = "set"
		s.log.Info("ui: limit set", "key", l.Key, "concurrency", l.Concurrency, "rate", l.Rate, "per", l.Per,
			"burst", l.Burst, "weight", l.Weight)
	case "delete":
		if err := s.m.DeleteKeyLimit(ctx, form.Key); err != nil {
			if errors.Is(err, taskflow.ErrInvalidData) {
				s.limitsPage(w, r, http.StatusBadRequest, limitForm{}, "", strings.TrimPrefix(err.Error(), "invalid data: "))
				return
			}
			s.failRedis(w, "delete the limit", err)
			return
		}
		done = "deleted"
		s.log.Info("ui: limit deleted", "key", form.Key)
	default:
		s.fail(w, http.StatusBadRequest, "no such limits action", nil)
		return
	}
	http.Redirect(w, r, "/limits?"+url.Values{"done": {done}, "key": {form.Key}}.Encode(), http.StatusSeeOther)
}

// parseLimit reads the set form; an empty field is 0 (no bound, or the
// default). The message says what is wrong, "" when nothing is.
func parseLimit(f limitForm) (taskflow.KeyLimit, string) {
	l := taskflow.KeyLimit{Key: f.Key}
	for _, x := range []struct {
		name, v string
		p       *int
	}{{"concurrency", f.Concurrency, &l.Concurrency}, {"rate", f.Rate, &l.Rate}, {"burst", f.Burst, &l.Burst},
		{"weight", f.Weight, &l.Weight}} {
		if x.v == "" {
			continue
		}
		n, err := strconv.Atoi(x.v)
		if err != nil || n < 0 {
			return l, fmt.Sprintf("The %s %q is not a whole number of 0 or more.", x.name, x.v)
		}
		*x.p = n
	}
	if f.Per != "" {
		d, err := time.ParseDuration(f.Per)
		if err != nil {
			return l, fmt.Sprintf("The interval %q is not a duration such as 1s, 1m or 500ms.", f.Per)
		}
		l.Per = d
	}
	if (l.Per != 0 || l.Burst != 0) && l.Rate == 0 {
		return l, "An interval or a burst shapes a rate: give the rate too."
	}
	return l, ""
}
