package ui

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/schedview"
)

// The schedules pages: every schedule with its next fire, policies and
// counters (GET /schedules), and one schedule (GET /schedules/{name}) with
// its next fire times, its recent fires linking to their flows, and the
// operator's actions: pause (with a note), resume and trigger, each a
// POST to the schedule's page carrying the CSRF token, refused in
// read-only mode and from another site, like the flows' actions.

// MaxScheduleNote bounds the note of a pause from the dashboard (the
// library's limit).
const MaxScheduleNote = 1024

// scheduleRow is one schedule in the list.
type scheduleRow struct {
	Name, When, Next, NextAt, Overlap, CatchUp, State string
	Fired, Skipped                                    int64
	LastFlow                                          string
	LastAt                                            string
}

type schedulesBody struct {
	Rows    []scheduleRow
	NextURL string
	Cursor  string
}

func orDefault[T ~string](v, def T) string {
	if v == "" {
		return string(def)
	}
	return string(v)
}

func (s *Server) schedules(w http.ResponseWriter, r *http.Request) {
	cursor := r.URL.Query().Get("after")
	list, next, err := s.m.ListSchedules(r.Context(), taskflow.WithLimit(s.cfg.PageSize), taskflow.WithCursor(cursor))
	if errors.Is(err, taskflow.ErrInvalidData) && cursor != "" {
		s.fail(w, http.StatusBadRequest, "not a page of the schedules list", nil)
		return
	}
	if err != nil {
		s.failRedis(w, "the schedules", err)
		return
	}
	now := s.cfg.Now()
	b := schedulesBody{Cursor: cursor}
	for _, sc := range list {
		row := scheduleRow{Name: sc.Name, When: schedview.When(sc, time.Duration.String), Overlap: orDefault(sc.Overlap, taskflow.OverlapSkip),
			CatchUp: orDefault(sc.CatchUp, taskflow.CatchUpLast), State: schedview.State(sc), Fired: sc.Fired, Skipped: sc.Skipped}
		if !sc.NextFire.IsZero() {
			row.Next, row.NextAt = dueIn(sc.NextFire, now), stamp(sc.NextFire)
		}
		if sc.LastFire != nil && sc.LastFire.FlowID != uuid.Nil {
			row.LastFlow, row.LastAt = sc.LastFire.FlowID.String(), stamp(sc.LastFire.At)
		}
		b.Rows = append(b.Rows, row)
	}
	if next != "" {
		b.NextURL = "/schedules?after=" + url.QueryEscape(next)
	}
	s.render(w, http.StatusOK, "schedules", page{Title: "Schedules", Nav: "schedules", Body: b})
}

// fireRow is one recent fire of a schedule.
type fireRow struct {
	At, Outcome, Reason, Lag, Flow string
}

type scheduleBody struct {
	S        *taskflow.Schedule
	Name     string
	When     string
	State    string
	Overlap  string
	CatchUp  string
	Created  string
	Upcoming []string
	Recent   []fireRow
	CSRF     string
	ReadOnly bool
	Done     string // the action done: a key of scheduleNotices
	Notice   string
	Error    string
}

// scheduleNotices are the notices a redirect after an action may ask for.
var scheduleNotices = map[string]string{
	"paused": "The schedule is paused.", "resumed": "The schedule is resumed.",
	"triggered": "The schedule made a flow now (the first of its recent fires).",
}

func (s *Server) schedule(w http.ResponseWriter, r *http.Request) {
	done := r.URL.Query().Get("done")
	if _, ok := scheduleNotices[done]; !ok {
		done = ""
	}
	s.schedulePage(w, r, http.StatusOK, done, "")
}

// schedulePage renders the schedule named in the path, with the notice
// of an action done (a key of scheduleNotices) or an error.
func (s *Server) schedulePage(w http.ResponseWriter, r *http.Request, status int, done, msg string) {
	name := r.PathValue("name")
	sc, err := s.m.GetSchedule(r.Context(), name, 10)
	switch {
	case errors.Is(err, taskflow.ErrNotFound), errors.Is(err, taskflow.ErrInvalidData):
		s.fail(w, http.StatusNotFound, "no schedule named "+name, nil)
		return
	case err != nil:
		s.failRedis(w, "the schedule", err)
		return
	}
	now := s.cfg.Now()
	b := scheduleBody{S: sc, Name: sc.Name, When: schedview.When(sc, time.Duration.String), State: schedview.State(sc),
		Overlap: orDefault(sc.Overlap, taskflow.OverlapSkip), CatchUp: orDefault(sc.CatchUp, taskflow.CatchUpLast),
		Created: stamp(sc.CreatedAt), CSRF: s.csrf, ReadOnly: s.cfg.ReadOnly, Done: done, Notice: scheduleNotices[done], Error: msg}
	var loc *time.Location
	if sc.Cron != "" && sc.TimeZone != "" && sc.TimeZone != "UTC" {
		loc, _ = time.LoadLocation(sc.TimeZone) // the library checked it
	}
	if !sc.Paused && !sc.Done {
		for _, t := range sc.Upcoming {
			line := dueIn(t, now)
			if loc != nil { // the wall time the cron expression names
				line = stamp(t) + " · " + t.In(loc).Format("Mon 15:04 MST") + strings.TrimPrefix(line, stamp(t))
			}
			b.Upcoming = append(b.Upcoming, line)
		}
	}
	for _, f := range sc.Recent {
		row := fireRow{At: stamp(f.At), Outcome: f.Outcome, Reason: f.Reason, Lag: roundLag(f.Lag).String()}
		if f.FlowID != uuid.Nil {
			row.Flow = f.FlowID.String()
		}
		b.Recent = append(b.Recent, row)
	}
	s.render(w, status, "schedule", page{Title: "Schedule " + sc.Name, Nav: "schedules", Body: b})
}

// scheduleAct takes an action on a schedule (form field "do": pause,
// resume or trigger) after the checks of every action.
func (s *Server) scheduleAct(w http.ResponseWriter, r *http.Request) {
	if !s.formAllowed(w, r) {
		return
	}
	name, do := r.PathValue("name"), r.PostFormValue("do")
	note := strings.TrimSpace(r.PostFormValue("note"))
	ctx := r.Context()
	var err error
	switch do {
	case "pause":
		if len(note) > MaxScheduleNote {
			s.schedulePage(w, r, http.StatusBadRequest, "", "The note is over 1024 bytes.")
			return
		}
		_, err = s.m.PauseSchedule(ctx, name, note)
	case "resume":
		_, err = s.m.ResumeSchedule(ctx, name)
	case "trigger":
		_, err = s.m.TriggerSchedule(ctx, name)
	default:
		s.fail(w, http.StatusBadRequest, "no such schedule action", nil)
		return
	}
	switch {
	case errors.Is(err, taskflow.ErrNotFound):
		s.fail(w, http.StatusNotFound, "no schedule named "+name, nil)
		return
	case errors.Is(err, taskflow.ErrInvalidData):
		s.schedulePage(w, r, http.StatusBadRequest, "", err.Error())
		return
	case err != nil:
		s.failRedis(w, do, err)
		return
	}
	done := map[string]string{"pause": "paused", "resume": "resumed", "trigger": "triggered"}[do]
	s.log.Info("ui: schedule action", "action", do, "schedule", name, "operator", s.operator(r), "note", note)
	http.Redirect(w, r, "/schedules/"+escapeName(name)+"?done="+done, http.StatusSeeOther)
}

// escapeName escapes a schedule name for a path, keeping its slashes.
func escapeName(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// roundLag rounds a fire's lag for reading: milliseconds under a minute,
// seconds above.
func roundLag(d time.Duration) time.Duration {
	if d >= time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}
