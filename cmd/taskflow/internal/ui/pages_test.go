package ui

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
)

// statsOf feeds the overview from the library's Stats (the CLI maps every
// field; a count of running flows is enough here).
func statsOf(m *taskflow.Manager) StatsFunc {
	return func(ctx context.Context) (*Overview, error) {
		st, err := m.Stats(ctx)
		if err != nil {
			return nil, err
		}
		return &Overview{Statuses: []StatusCount{{Status: "running", Count: st.Flows[taskflow.StatusRunning]}}}, nil
	}
}

// TestRedisDownIsSaid: with Redis gone every page says Redis is
// unreachable with 503, never "No stats source is configured" with 200.
func TestRedisDownIsSaid(t *testing.T) {
	// go-redis retries a refused dial for about 2 s: the page's Timeout
	// ends that sooner (the CLI's dashboard client does not retry so).
	fx := newFixtureWith(t, func(m *taskflow.Manager) Config { return Config{Stats: statsOf(m), Timeout: 300 * time.Millisecond} })
	f := fx.create(t, "g")
	if code, body := get(t, fx.srv.Client(), fx.srv.URL+"/"); code != http.StatusOK || strings.Contains(body, "unreachable") {
		t.Fatalf("overview with Redis up: %d", code)
	}
	fx.mr.Close()
	for _, path := range []string{"/", "/flows", "/flows/" + f.ID.String(), "/flows/" + f.ID.String() + "/cancel", "/api/stats"} {
		code, body := get(t, fx.srv.Client(), fx.srv.URL+path)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "Redis is unreachable") || strings.Contains(body, "No stats source") {
			t.Errorf("%s with Redis down: %d\n%.600s", path, code, body)
		}
	}
}

// TestTimeoutBoundsAPage: a Redis that accepts connections and never
// answers holds a page for Config.Timeout, then the page says so (503).
func TestTimeoutBoundsAPage(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // read nothing, answer nothing
		}
	}()
	c := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), ContextTimeoutEnabled: true, ReadTimeout: time.Minute, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	store, err := taskflow.NewRedisStore(c, taskflow.WithPrefix("uistuck"))
	if err != nil {
		t.Fatal(err)
	}
	m := taskflow.NewManager(store)
	s, err := New(m, Config{Stats: statsOf(m), Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, s)
	for _, path := range []string{"/", "/flows", "/api/stats"} {
		code, body := get(t, srv.Client(), srv.URL+path)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "Redis is unreachable (no answer within 200ms)") {
			t.Errorf("%s on a stuck Redis: %d\n%.600s", path, code, body)
		}
	}
}

// TestSpaceHint: a flow space that does not exist (a --prefix typo) is
// said on the overview and on an empty list, not served as an idle one.
func TestSpaceHint(t *testing.T) {
	missing := errors.New(`no flow space "typo" at 127.0.0.1:6379; did you mean --prefix demo?`)
	fx := newFixtureWith(t, func(m *taskflow.Manager) Config {
		return Config{Stats: statsOf(m), CheckSpace: func(context.Context) error { return missing }}
	})
	for _, path := range []string{"/", "/flows?status=running"} {
		code, body := get(t, fx.srv.Client(), fx.srv.URL+path)
		if code != http.StatusOK || !strings.Contains(body, `id="hint"`) || !strings.Contains(body, "did you mean --prefix demo?") {
			t.Errorf("%s: %d, no hint\n%.800s", path, code, body)
		}
	}
	ok := newFixtureWith(t, func(m *taskflow.Manager) Config {
		return Config{Stats: statsOf(m), CheckSpace: func(context.Context) error { return nil }}
	})
	if _, body := get(t, ok.srv.Client(), ok.srv.URL+"/"); strings.Contains(body, `id="hint"`) {
		t.Error("a hint for a flow space that exists")
	}
}

// TestCancelAnEndedFlow: cancelling a flow that is cancelled already
// says so plainly (409), without the form again, before and after the
// form is posted.
func TestCancelAnEndedFlow(t *testing.T) {
	fx := newFixture(t, Config{})
	f := fx.create(t, "g")
	ctx := context.Background()
	u := fx.srv.URL + "/flows/" + f.ID.String() + "/cancel"
	_, page := get(t, fx.srv.Client(), u) // the form, while the flow runs
	tok := csrfRE.FindStringSubmatch(page)
	if tok == nil {
		t.Fatal("no csrf token on the confirmation page")
	}
	if _, err := fx.m.Cancel(ctx, f.ID); err != nil { // another operator was quicker
		t.Fatal(err)
	}
	want := "Flow " + f.ID.String() + " is already cancelled: there is nothing to cancel."
	code, body := postForm(t, fx.srv.Client(), u, url.Values{"csrf": {tok[1]}, "reason": {"stuck"}, "operator": {"olga"}}, nil)
	if code != http.StatusConflict || !strings.Contains(body, want) || strings.Contains(body, "confirm-form") || strings.Contains(body, "cannot move") {
		t.Fatalf("POST cancel of a cancelled flow: %d\n%s", code, body)
	}
	code, body = get(t, fx.srv.Client(), u)
	if code != http.StatusConflict || !strings.Contains(body, want) || strings.Contains(body, "confirm-form") {
		t.Fatalf("GET cancel of a cancelled flow: %d\n%s", code, body)
	}
	// Resume of a flow that is not waiting: the same plain answer.
	code, body = get(t, fx.srv.Client(), fx.srv.URL+"/flows/"+f.ID.String()+"/resume")
	if code != http.StatusConflict || !strings.Contains(body, "is cancelled, not waiting: there is nothing to resume.") {
		t.Fatalf("GET resume of a cancelled flow: %d\n%s", code, body)
	}
}

// TestStatsJSONIsNotHTMLEscaped: /api/stats is application/json a program
// reads: a controller id with '<', '>' or '&' comes as written.
func TestStatsJSONIsNotHTMLEscaped(t *testing.T) {
	const controller = "ops/<a&b>"
	fx := newFixture(t, Config{Stats: func(context.Context) (*Overview, error) {
		return &Overview{Ready: []ReadyQueue{{Controller: controller, Depth: 1}}}, nil
	}})
	resp, err := http.Get(fx.srv.URL + "/api/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if !strings.Contains(string(body), `"controller":"`+controller+`"`) {
		t.Fatalf("/api/stats %s: the controller id is not as written", body)
	}
}
