package ui

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
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

// nextChildren finds the link to the next page of children.
var nextChildren = regexp.MustCompile(`id="children-next" href="([^"]+)"`)

// TestFlowPageChildren: a parent's page lists its children a page at a
// time (the cursor in the URL), with the progress of its join, every key
// escaped; a child's page links to its parent.
func TestFlowPageChildren(t *testing.T) {
	fx := newFixture(t, Config{PageSize: 2})
	ctx := context.Background()
	parent, err := fx.m.StartRunning(ctx, fx.create(t, "fan out").ID)
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{hostileGoal, "b", "c", "d", "e"}
	ins := make([]taskflow.ChildInput, len(keys))
	for i, k := range keys {
		ins[i] = taskflow.ChildInput{Key: k, Flow: taskflow.CreateManagedInput{ControllerID: "ops/child", Goal: "part", OwnerSessionKey: "agent:a:session:s"}}
	}
	kids, err := fx.m.StartChildren(ctx, parent.ID, ins)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Hour)
	if _, err := fx.m.SetWaiting(ctx, parent.ID, taskflow.WaitChildren(taskflow.Join{Need: 2, FailFast: true, Deadline: deadline})); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.m.Finish(ctx, kids[1].ID, nil); err != nil {
		t.Fatal(err)
	}

	u := fx.srv.URL + "/flows/" + parent.ID.String()
	code, body := get(t, fx.srv.Client(), u)
	for _, want := range []string{
		`Children <span class="muted">(5)</span>`,
		"Waiting on its children: need 2 of 5, fail fast, deadline " + stamp(deadline) + " (in ",
		`<span data-join="finished">1</span> finished`, `<span data-join="failed">0</span> failed`,
		`<span data-join="cancelled">0</span> cancelled`, `<span data-join="pending">4</span> pending`,
		`<tr data-child="` + kids[0].ID.String() + `">`, `href="/flows/` + kids[0].ID.String() + `"`,
		`&lt;script&gt;window.pwned=1&lt;/script&gt;`,
		`<tr data-child="` + kids[1].ID.String() + `"><td class="child-key">b</td>`,
		`<span class="st status-finished">finished</span></td><td class="nw">yes</td>`,
		`<span class="st status-running">running</span></td><td class="nw">not yet</td>`,
		"children, need 2, fail fast",
	} {
		if !strings.Contains(body, want) {
			t.Fatalf("parent page (%d) lacks %q:\n%s", code, want, body)
		}
	}
	if code != http.StatusOK || strings.Contains(body, "<script>window") || strings.Contains(body, kids[2].ID.String()) ||
		strings.Contains(body, `id="children-first"`) {
		t.Fatalf("parent page: %d, unescaped key, a third child or a first-page link on the first page:\n%s", code, body)
	}

	// Page by page: 2, 2, 1, then no next page.
	seen := map[string]bool{}
	for n, next := 0, u; next != ""; n++ {
		code, body = get(t, fx.srv.Client(), next)
		if code != http.StatusOK {
			t.Fatalf("%s: %d", next, code)
		}
		if n > 0 && !strings.Contains(body, `id="children-first" href="/flows/`+parent.ID.String()+`#children"`) {
			t.Fatalf("page %d has no link to the first:\n%s", n+1, body)
		}
		for _, k := range kids {
			if strings.Contains(body, `data-child="`+k.ID.String()+`"`) {
				if seen[k.ID.String()] {
					t.Fatalf("child %s on two pages", k.ID)
				}
				seen[k.ID.String()] = true
			}
		}
		next = ""
		if m := nextChildren.FindStringSubmatch(body); m != nil {
			if !strings.HasPrefix(m[1], "/flows/"+parent.ID.String()+"?children_cursor=") {
				t.Fatalf("next page link %q", m[1])
			}
			next = fx.srv.URL + strings.ReplaceAll(m[1], "&amp;", "&")
		}
		if n > 3 {
			t.Fatal("more pages than children")
		}
	}
	if len(seen) != len(kids) {
		t.Fatalf("the pages showed %d children of %d", len(seen), len(kids))
	}
	if code, _ := get(t, fx.srv.Client(), u+"?children_cursor=xyz"); code != http.StatusBadRequest {
		t.Fatalf("a malformed children cursor: %d, want 400", code)
	}

	// The child links to its parent, its key escaped.
	code, body = get(t, fx.srv.Client(), fx.srv.URL+"/flows/"+kids[0].ID.String())
	if code != http.StatusOK || !strings.Contains(body, `<a class="mono" id="parent-link" href="/flows/`+parent.ID.String()+`">`) ||
		!strings.Contains(body, `<code id="child-key">&lt;script&gt;`) || strings.Contains(body, "<script>window") ||
		strings.Contains(body, `id="children"`) {
		t.Fatalf("child page: %d\n%s", code, body)
	}
	// A flow that is neither: no parent, no children.
	code, body = get(t, fx.srv.Client(), fx.srv.URL+"/flows/"+fx.create(t, "alone").ID.String())
	if code != http.StatusOK || strings.Contains(body, `id="parent-link"`) || strings.Contains(body, `id="children"`) {
		t.Fatalf("a flow without parent or children: %d\n%s", code, body)
	}
}

// TestFlowPageExplains: a flow's page carries Manager.Explain's answer,
// with a "stuck" badge only on a stuck flow, its facts sorted, every
// value escaped.
func TestFlowPageExplains(t *testing.T) {
	fx := newFixture(t, Config{})
	ctx := context.Background()
	// Created two minutes ago and never started: stuck.
	c := redis.NewClient(&redis.Options{Addr: fx.mr.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	past := time.Now().Add(-150 * time.Second)
	old, err := taskflow.NewRedisStore(c, taskflow.WithPrefix("uitest"), taskflow.WithClock(func() time.Time { return past }))
	if err != nil {
		t.Fatal(err)
	}
	stale, err := taskflow.NewManager(old).CreateManaged(ctx, taskflow.CreateManagedInput{ControllerID: "ops/ui", Goal: "forgotten", OwnerSessionKey: "agent:a:session:s"})
	if err != nil {
		t.Fatal(err)
	}
	code, body := get(t, fx.srv.Client(), fx.srv.URL+"/flows/"+stale.ID.String())
	for _, want := range []string{
		`<section class="explain stuck" id="explain">`,
		`<span class="badge badge-stuck" id="explain-stuck" title="nothing in place will move this flow">stuck</span>`,
		`<code class="muted" id="explain-code">created</code>`,
		`<p id="explain-text">The flow was created 2m ago and never started: a created flow is on no ready queue.</p>`,
		`<p id="explain-moves"><strong>What moves it:</strong> StartRunning (or a start through the agent tool).</p>`,
		`<div><dt>age_s</dt><dd data-fact="age_s">150</dd></div>`,
	} {
		if !strings.Contains(body, want) {
			t.Fatalf("stale flow's page (%d) lacks %q:\n%s", code, want, body)
		}
	}

	// Waiting on an event whose topic is markup: not stuck, escaped.
	f, err := fx.m.StartRunning(ctx, fx.create(t, "waits").ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fx.m.SetWaiting(ctx, f.ID, taskflow.WaitExternalEvent(hostileGoal, "c-1")); err != nil {
		t.Fatal(err)
	}
	code, body = get(t, fx.srv.Client(), fx.srv.URL+"/flows/"+f.ID.String())
	for _, want := range []string{
		`<section class="explain" id="explain">`,
		`<code class="muted" id="explain-code">waiting_event</code>`,
		`<p id="explain-text">The flow waits on an event of topic &#34;&lt;script&gt;window.pwned=1&lt;/script&gt;`,
		`<div><dt>correlation_id</dt><dd data-fact="correlation_id">c-1</dd></div><div><dt>topic</dt><dd data-fact="topic">&lt;script&gt;`,
		`<div><dt>wait_kind</dt><dd data-fact="wait_kind">external_event</dd></div></dl>`,
	} {
		if !strings.Contains(body, want) {
			t.Fatalf("waiting flow's page (%d) lacks %q:\n%s", code, want, body)
		}
	}
	if code != http.StatusOK || strings.Contains(body, `id="explain-stuck"`) || strings.Contains(body, "<script>window") {
		t.Fatalf("waiting flow's page: %d, a stuck badge or unescaped markup:\n%s", code, body)
	}
}
