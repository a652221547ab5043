package ui

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/taskflow-dev/taskflow"
)

func (fx *fixture) schedule(t *testing.T, name, goal string) *taskflow.Schedule {
	t.Helper()
	sc, err := fx.m.CreateSchedule(context.Background(), taskflow.ScheduleInput{Name: name, Cron: "*/5 * * * *", TimeZone: "Europe/Madrid",
		Flow: taskflow.CreateManagedInput{ControllerID: "ops/ui", Goal: goal, OwnerSessionKey: "agent:a:session:s"}})
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func TestSchedulePages(t *testing.T) {
	fx := newFixture(t, Config{})
	ctx := context.Background()
	fx.schedule(t, "ops/report", hostileGoal)
	f, err := fx.m.TriggerSchedule(ctx, "ops/report")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/schedules", "/schedules/ops/report"} {
		code, body := get(t, fx.srv.Client(), fx.srv.URL+path)
		if code != http.StatusOK || !strings.Contains(body, "*/5 * * * * (Europe/Madrid)") || !strings.Contains(body, `href="/flows/`+f.ID.String()+`"`) {
			t.Fatalf("%s: %d\n%s", path, code, body)
		}
		if strings.Contains(body, "<script>window") || strings.Contains(body, "<img src=x") {
			t.Fatalf("%s: schedule data rendered as markup", path)
		}
	}
	_, body := get(t, fx.srv.Client(), fx.srv.URL+"/schedules/ops/report")
	if strings.Count(body, "<li>") != 10 || !strings.Contains(body, "&lt;script&gt;window.pwned=1&lt;/script&gt;") {
		t.Fatalf("schedule page:\n%s", body)
	}
	if code, _ := get(t, fx.srv.Client(), fx.srv.URL+"/schedules/nope"); code != http.StatusNotFound {
		t.Fatalf("unknown schedule: %d", code)
	}
	if code, _ := get(t, fx.srv.Client(), fx.srv.URL+"/schedules?after=bad%20cursor"); code != http.StatusBadRequest {
		t.Fatalf("bad cursor: %d", code)
	}
}

func TestScheduleActions(t *testing.T) {
	fx := newFixture(t, Config{})
	ctx := context.Background()
	fx.schedule(t, "ops/report", "report")
	u := fx.srv.URL + "/schedules/ops/report"
	_, page := get(t, fx.srv.Client(), u)
	tok := csrfRE.FindStringSubmatch(page)
	if tok == nil || !strings.Contains(page, `id="action-pause"`) {
		t.Fatalf("no pause form:\n%s", page)
	}
	paused := func() bool {
		sc, err := fx.m.GetSchedule(ctx, "ops/report", 1)
		if err != nil {
			t.Fatal(err)
		}
		return sc.Paused
	}
	// No token, a wrong one, another site: refused, nothing changes.
	for name, tc := range map[string]struct {
		form url.Values
		hdr  map[string]string
	}{
		"no token":    {url.Values{"do": {"pause"}}, nil},
		"wrong token": {url.Values{"do": {"pause"}, "csrf": {"x"}}, nil},
		"cross-site":  {url.Values{"do": {"pause"}, "csrf": {tok[1]}}, map[string]string{"Sec-Fetch-Site": "cross-site"}},
		"origin":      {url.Values{"do": {"pause"}, "csrf": {tok[1]}}, map[string]string{"Origin": "https://evil.example"}},
	} {
		if code, _ := postForm(t, fx.srv.Client(), u, tc.form, tc.hdr); code != http.StatusForbidden {
			t.Fatalf("%s: status %d, want 403", name, code)
		}
		if paused() {
			t.Fatalf("%s: paused", name)
		}
	}
	// A GET with the action's parameters changes nothing.
	get(t, fx.srv.Client(), u+"?do=pause&csrf="+url.QueryEscape(tok[1]))
	if paused() {
		t.Fatal("a GET paused the schedule")
	}
	if code, _ := postForm(t, fx.srv.Client(), u, url.Values{"do": {"explode"}, "csrf": {tok[1]}}, nil); code != http.StatusBadRequest {
		t.Fatalf("unknown action: %d", code)
	}
	if code, body := postForm(t, fx.srv.Client(), u, url.Values{"do": {"pause"}, "csrf": {tok[1]}, "note": {strings.Repeat("n", 1025)}}, nil); code != http.StatusBadRequest || !strings.Contains(body, "over 1024 bytes") || paused() {
		t.Fatalf("long note: %d", code)
	}
	if code, _ := postForm(t, fx.srv.Client(), u, url.Values{"do": {"pause"}, "csrf": {tok[1]}, "note": {"feed down"}}, nil); code != http.StatusSeeOther || !paused() {
		t.Fatalf("pause: %d", code)
	}
	_, page = get(t, fx.srv.Client(), u+"?done=paused")
	if !strings.Contains(page, "The schedule is paused.") || !strings.Contains(page, `id="action-resume"`) || !strings.Contains(page, "feed down") {
		t.Fatalf("after pause:\n%s", page)
	}
	if code, _ := postForm(t, fx.srv.Client(), u, url.Values{"do": {"resume"}, "csrf": {tok[1]}}, nil); code != http.StatusSeeOther || paused() {
		t.Fatalf("resume: %d", code)
	}
	if code, _ := postForm(t, fx.srv.Client(), u, url.Values{"do": {"trigger"}, "csrf": {tok[1]}}, nil); code != http.StatusSeeOther {
		t.Fatalf("trigger: %d", code)
	}
	sc, err := fx.m.GetSchedule(ctx, "ops/report", 1)
	if err != nil || sc.Fired != 1 || len(sc.Recent) != 1 || sc.Recent[0].Reason != "trigger" {
		t.Fatalf("after trigger: %+v %v", sc, err)
	}
	if code, _ := postForm(t, fx.srv.Client(), fx.srv.URL+"/schedules/nope", url.Values{"do": {"trigger"}, "csrf": {tok[1]}}, nil); code != http.StatusNotFound {
		t.Fatalf("trigger of an unknown schedule: %d", code)
	}
}

func TestScheduleActionsReadOnly(t *testing.T) {
	fx := newFixture(t, Config{ReadOnly: true})
	sc := fx.schedule(t, "ops/report", "report")
	u := fx.srv.URL + "/schedules/ops/report"
	_, page := get(t, fx.srv.Client(), u)
	if strings.Contains(page, "<form method=\"post\"") {
		t.Fatal("the read-only page offers an action")
	}
	for _, do := range []string{"pause", "resume", "trigger"} {
		if code, _ := postForm(t, fx.srv.Client(), u, url.Values{"do": {do}, "csrf": {fx.ui.csrf}}, nil); code != http.StatusForbidden {
			t.Fatalf("POST %s: %d", do, code)
		}
	}
	got, err := fx.m.GetSchedule(context.Background(), "ops/report", 1)
	if err != nil || got.Revision != sc.Revision || got.Fired != 0 {
		t.Fatalf("schedule changed: %+v %v", got, err)
	}
}
