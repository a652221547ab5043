package ui

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/taskflow-dev/taskflow"
)

// do sends a request with the given Host header (as a DNS-rebound page's
// would be: the browser names the attacker's host name).
func do(t *testing.T, fx *fixture, method, path, host string, form url.Values, hdr map[string]string) int {
	t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req, err := http.NewRequest(method, fx.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := *fx.srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestForeignHostIsRefused: in loopback mode without credentials the
// dashboard answers only requests that name a loopback host (or one of
// AllowedHosts): a page that rebinds its own name to 127.0.0.1 reads
// nothing and, with the page's CSRF token and a matching Origin, cancels
// nothing.
func TestForeignHostIsRefused(t *testing.T) {
	fx := newFixture(t, Config{})
	f := fx.create(t, "g")
	_, port, _ := strings.Cut(strings.TrimPrefix(fx.srv.URL, "http://"), ":")
	evil := "evil.example:" + port
	for _, path := range []string{"/", "/flows", "/flows/" + f.ID.String(), "/api/stats", "/flows/" + f.ID.String() + "/live", "/static/app.css"} {
		if code := do(t, fx, http.MethodGet, path, evil, nil, nil); code != http.StatusForbidden {
			t.Errorf("GET %s with Host %s: %d, want 403", path, evil, code)
		}
	}
	form := url.Values{"csrf": {fx.ui.csrf}, "reason": {"r"}, "operator": {"mallory"}}
	code := do(t, fx, http.MethodPost, "/flows/"+f.ID.String()+"/cancel", evil, form,
		map[string]string{"Origin": "http://" + evil, "Sec-Fetch-Site": "same-origin"})
	if code != http.StatusForbidden {
		t.Fatalf("rebound POST: %d, want 403", code)
	}
	if g, err := fx.m.Get(context.Background(), f.ID); err != nil || g.Status != taskflow.StatusCreated {
		t.Fatalf("flow after a rebound POST: %+v %v", g, err)
	}
	// Loopback names are this dashboard.
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "LocalHost:" + port, "[::1]:" + port, "127.0.0.2", "localhost"} {
		if code := do(t, fx, http.MethodGet, "/flows", host, nil, nil); code != http.StatusOK {
			t.Errorf("Host %s: %d, want 200", host, code)
		}
	}
	for _, host := range []string{"evil.example", "localhost.evil.example:" + port, "127.0.0.1.nip.io:" + port, "10.0.0.1:" + port} {
		if code := do(t, fx, http.MethodGet, "/flows", host, nil, nil); code != http.StatusForbidden {
			t.Errorf("Host %q: %d, want 403", host, code)
		}
	}

	// AllowedHosts adds names (any port, any case).
	fa := newFixture(t, Config{AllowedHosts: []string{"dash.internal", "Ops.Example."}})
	for host, want := range map[string]int{
		"dash.internal:8080": http.StatusOK, "ops.example": http.StatusOK, "ops.example.:80": http.StatusOK,
		"127.0.0.1": http.StatusOK, "evil.example": http.StatusForbidden, "internal": http.StatusForbidden,
	} {
		if code := do(t, fa, http.MethodGet, "/flows", host, nil, nil); code != want {
			t.Errorf("AllowedHosts, Host %s: %d, want %d", host, code, want)
		}
	}

	// With credentials the browser of another site has none to send:
	// the Host is not what protects the dashboard then.
	ft := newFixture(t, Config{Token: "s3cret"})
	if code := do(t, ft, http.MethodGet, "/flows", "dash.example.com", nil, map[string]string{"Authorization": "Bearer s3cret"}); code != http.StatusOK {
		t.Errorf("with a token, a public name: %d, want 200", code)
	}
}
