package ui

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
)

// hostileGoal is what a model might write into a goal: markup that must
// render as text.
const hostileGoal = `<script>window.pwned=1</script>"><img src=x onerror="window.pwned=2">`

type fixture struct {
	m   *taskflow.Manager
	srv *httptest.Server
	ui  *Server
	mr  *miniredis.Miniredis
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	return newFixtureWith(t, func(*taskflow.Manager) Config { return cfg })
}

// newFixtureWith is newFixture with a configuration made for the
// fixture's manager.
func newFixtureWith(t *testing.T, config func(*taskflow.Manager) Config) *fixture {
	t.Helper()
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	store, err := taskflow.NewRedisStore(c, taskflow.WithPrefix("uitest"))
	if err != nil {
		t.Fatal(err)
	}
	m := taskflow.NewManager(store)
	t.Cleanup(func() { _ = m.Close() })
	s, err := New(m, config(m))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &fixture{m: m, srv: srv, ui: s, mr: mr}
}

func (fx *fixture) create(t *testing.T, goal string) *taskflow.Flow {
	t.Helper()
	f, err := fx.m.CreateManaged(context.Background(), taskflow.CreateManagedInput{
		ControllerID: "ops/ui", Goal: goal, OwnerSessionKey: "agent:a:session:s",
		State: map[string]any{"note": hostileGoal},
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func TestPagesEscapeFlowData(t *testing.T) {
	fx := newFixture(t, Config{})
	f := fx.create(t, hostileGoal)
	for _, path := range []string{"/flows/" + f.ID.String(), "/flows?status=created", "/flows/" + f.ID.String() + "/cancel"} {
		code, body := get(t, fx.srv.Client(), fx.srv.URL+path)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		if strings.Contains(body, "<script>window") || strings.Contains(body, "<img src=x") {
			t.Fatalf("%s: flow data rendered as markup:\n%s", path, body)
		}
		// (The list lets lines break after punctuation: <wbr> elements.)
		if !strings.Contains(strings.ReplaceAll(body, "<wbr>", ""), "&lt;script&gt;window.pwned=1&lt;/script&gt;") {
			t.Fatalf("%s: the goal is not shown as text", path)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	fx := newFixture(t, Config{})
	resp, err := fx.srv.Client().Get(fx.srv.URL + "/flows")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Fatalf("CSP %q", csp)
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatal("no X-Frame-Options")
	}
}

func postForm(t *testing.T, c *http.Client, u string, form url.Values, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c2 := *c
	c2.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c2.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestCancelNeedsCSRFReasonAndOperator(t *testing.T) {
	fx := newFixture(t, Config{})
	f := fx.create(t, "g")
	u := fx.srv.URL + "/flows/" + f.ID.String() + "/cancel"
	_, page := get(t, fx.srv.Client(), u)
	tok := csrfRE.FindStringSubmatch(page)
	if tok == nil {
		t.Fatal("no csrf token on the confirmation page")
	}
	ctx := context.Background()
	status := func() taskflow.FlowStatus {
		g, err := fx.m.Get(ctx, f.ID)
		if err != nil {
			t.Fatal(err)
		}
		return g.Status
	}
	// No token, a wrong token, a cross-site request: refused, nothing changes.
	for name, tc := range map[string]struct {
		form url.Values
		hdr  map[string]string
	}{
		"no token":    {url.Values{"reason": {"r"}, "operator": {"o"}}, nil},
		"wrong token": {url.Values{"csrf": {"x"}, "reason": {"r"}, "operator": {"o"}}, nil},
		"cross-site":  {url.Values{"csrf": {tok[1]}, "reason": {"r"}, "operator": {"o"}}, map[string]string{"Sec-Fetch-Site": "cross-site"}},
		"origin":      {url.Values{"csrf": {tok[1]}, "reason": {"r"}, "operator": {"o"}}, map[string]string{"Origin": "https://evil.example"}},
	} {
		if code, _ := postForm(t, fx.srv.Client(), u, tc.form, tc.hdr); code != http.StatusForbidden {
			t.Fatalf("%s: status %d, want 403", name, code)
		}
		if st := status(); st != taskflow.StatusCreated {
			t.Fatalf("%s: flow is %s", name, st)
		}
	}
	// A reason and an operator are required.
	if code, body := postForm(t, fx.srv.Client(), u, url.Values{"csrf": {tok[1]}, "operator": {"o"}}, nil); code != http.StatusBadRequest || !strings.Contains(body, "Give a reason") {
		t.Fatalf("no reason: %d", code)
	}
	if code, _ := postForm(t, fx.srv.Client(), u, url.Values{"csrf": {tok[1]}, "reason": {"r"}}, nil); code != http.StatusBadRequest {
		t.Fatalf("no operator: %d", code)
	}
	code, _ := postForm(t, fx.srv.Client(), u, url.Values{"csrf": {tok[1]}, "reason": {"stuck for a day"}, "operator": {"olga"}}, map[string]string{"Origin": fx.srv.URL})
	if code != http.StatusSeeOther {
		t.Fatalf("cancel: %d", code)
	}
	if st := status(); st != taskflow.StatusCancelled {
		t.Fatalf("flow is %s after cancel", st)
	}
}

func TestReadOnlyRefusesEveryAction(t *testing.T) {
	fx := newFixture(t, Config{ReadOnly: true})
	f := fx.create(t, "g")
	_, body := get(t, fx.srv.Client(), fx.srv.URL+"/flows/"+f.ID.String())
	if strings.Contains(body, "action-cancel") || !strings.Contains(body, "read-only") {
		t.Fatal("read-only page offers an action")
	}
	for _, a := range []string{"cancel", "resume", "requeue"} {
		u := fx.srv.URL + "/flows/" + f.ID.String() + "/" + a
		if code, _ := get(t, fx.srv.Client(), u); code != http.StatusForbidden {
			t.Fatalf("GET %s: %d", a, code)
		}
		// Even with the server's own token, a direct POST is refused.
		if code, _ := postForm(t, fx.srv.Client(), u, url.Values{"csrf": {fx.ui.csrf}, "reason": {"r"}, "operator": {"o"}}, nil); code != http.StatusForbidden {
			t.Fatalf("POST %s: %d", a, code)
		}
	}
	g, err := fx.m.Get(context.Background(), f.ID)
	if err != nil || g.Status != taskflow.StatusCreated || g.Revision != f.Revision {
		t.Fatalf("flow changed: %+v %v", g, err)
	}
}

func TestTokenAndBasicAuth(t *testing.T) {
	fx := newFixture(t, Config{Token: "s3cret"})
	if code, _ := get(t, fx.srv.Client(), fx.srv.URL+"/flows"); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", code)
	}
	jar := newJar()
	c := &http.Client{Jar: jar}
	if code, _ := get(t, c, fx.srv.URL+"/flows?token=s3cret"); code != http.StatusOK {
		t.Fatalf("token login: %d", code)
	}
	if code, _ := get(t, c, fx.srv.URL+"/flows"); code != http.StatusOK {
		t.Fatalf("cookie: %d", code)
	}
	req, _ := http.NewRequest(http.MethodGet, fx.srv.URL+"/flows", nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("bearer: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()

	fb := newFixture(t, Config{BasicUser: "olga", BasicPassword: "pw"})
	if code, _ := get(t, fb.srv.Client(), fb.srv.URL+"/flows"); code != http.StatusUnauthorized {
		t.Fatalf("no basic auth: %d", code)
	}
	req, _ = http.NewRequest(http.MethodGet, fb.srv.URL+"/flows", nil)
	req.SetBasicAuth("olga", "pw")
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("basic auth: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
}

func TestCheckAddr(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:8080": true, "localhost:8080": true,
		"0.0.0.0:8080": false, ":8080": false, "10.1.2.3:80": false,
	} {
		if err := CheckAddr(addr, Config{}); (err == nil) != ok {
			t.Errorf("%s: %v", addr, err)
		}
	}
	if err := CheckAddr("0.0.0.0:8080", Config{Token: "t"}); err != nil {
		t.Errorf("with a token: %v", err)
	}
}

func TestFlowsPagesWithCursor(t *testing.T) {
	fx := newFixture(t, Config{PageSize: 3})
	seen := map[string]bool{}
	for i := 0; i < 7; i++ {
		fx.create(t, "g")
	}
	next := fx.srv.URL + "/flows?status=created"
	linkRE := regexp.MustCompile(`href="/flows/([0-9a-f-]{36})"`)
	nextRE := regexp.MustCompile(`id="next" href="([^"]+)"`)
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		_, body := get(t, fx.srv.Client(), next)
		for _, m := range linkRE.FindAllStringSubmatch(body, -1) {
			if seen[m[1]] {
				t.Fatalf("%s listed twice", m[1])
			}
			seen[m[1]] = true
		}
		next = ""
		if m := nextRE.FindStringSubmatch(body); m != nil {
			next = fx.srv.URL + strings.ReplaceAll(m[1], "&amp;", "&")
		}
	}
	if len(seen) != 7 {
		t.Fatalf("saw %d flows, want 7", len(seen))
	}
}

func TestSearchAndLive(t *testing.T) {
	fx := newFixture(t, Config{})
	f := fx.create(t, "g")
	c := fx.srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(fx.srv.URL + "/search?q=" + url.QueryEscape("{"+f.ID.String()+"}"))
	if err != nil || resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/flows/"+f.ID.String() {
		t.Fatalf("search: %v %v", resp, err)
	}
	resp.Body.Close()
	if code, _ := get(t, http.DefaultClient, fx.srv.URL+"/search?q=nope"); code != http.StatusBadRequest {
		t.Fatalf("bad search: %d", code)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fx.srv.URL+"/flows/"+f.ID.String()+"/live", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf) // ": watching": the subscription is up
	if !strings.Contains(string(buf[:n]), "watching") {
		t.Fatalf("stream start %q", buf[:n])
	}
	if _, err := fx.m.StartRunning(ctx, f.ID); err != nil {
		t.Fatal(err)
	}
	var got string
	for !strings.Contains(got, `"Kind":"started"`) {
		n, err := resp.Body.Read(buf)
		if err != nil {
			t.Fatalf("stream: %v (got %q)", err, got)
		}
		got += string(buf[:n])
	}
}

func newJar() http.CookieJar {
	j, _ := cookiejar.New(nil)
	return j
}

func TestMetricsOnlyWhenAsked(t *testing.T) {
	fx := newFixture(t, Config{})
	if code, _ := get(t, fx.srv.Client(), fx.srv.URL+"/metrics"); code != http.StatusNotFound {
		t.Fatalf("/metrics without Metrics: %d", code)
	}
	fm := newFixture(t, Config{Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "taskflow_up 1\n")
	})})
	if code, body := get(t, fm.srv.Client(), fm.srv.URL+"/metrics"); code != http.StatusOK || body != "taskflow_up 1\n" {
		t.Fatalf("/metrics: %d %q", code, body)
	}
}

func newServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}
