package ui

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/taskflow-dev/taskflow"
)

// keyLimits reads the fixture's limits.
func (fx *fixture) keyLimits(t *testing.T) []taskflow.KeyUsage {
	t.Helper()
	list, err := fx.m.KeyLimits(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func TestLimitsActions(t *testing.T) {
	fx := newFixture(t, Config{})
	u := fx.srv.URL + "/limits"
	code, page := get(t, fx.srv.Client(), u)
	tok := csrfRE.FindStringSubmatch(page)
	if code != http.StatusOK || tok == nil || !strings.Contains(page, `id="no-limits"`) || !strings.Contains(page, `id="action-set-limit"`) {
		t.Fatalf("empty limits page: %d\n%s", code, page)
	}
	set := url.Values{"do": {"set"}, "key": {"tenant:acme"}, "concurrency": {"3"}, "csrf": {tok[1]}}
	// No token, a wrong one, another site: refused, nothing set.
	for name, tc := range map[string]struct {
		form url.Values
		hdr  map[string]string
	}{
		"no token":    {url.Values{"do": {"set"}, "key": {"k"}}, nil},
		"wrong token": {url.Values{"do": {"set"}, "key": {"k"}, "csrf": {"x"}}, nil},
		"cross-site":  {set, map[string]string{"Sec-Fetch-Site": "cross-site"}},
		"origin":      {set, map[string]string{"Origin": "https://evil.example"}},
	} {
		if code, _ := postForm(t, fx.srv.Client(), u, tc.form, tc.hdr); code != http.StatusForbidden {
			t.Fatalf("%s: status %d, want 403", name, code)
		}
		if l := fx.keyLimits(t); len(l) != 0 {
			t.Fatalf("%s: limits %+v", name, l)
		}
	}
	get(t, fx.srv.Client(), u+"?"+set.Encode()) // a GET sets nothing
	if l := fx.keyLimits(t); len(l) != 0 {
		t.Fatalf("a GET set %+v", l)
	}
	// Bad input: the page again, with the values typed and the reason.
	for _, c := range []struct {
		form url.Values
		want string
	}{
		{url.Values{"key": {"a b"}, "concurrency": {"1"}}, `concurrency key &#34;a b&#34; holds`},
		{url.Values{"key": {""}}, "Name the key."},
		{url.Values{"key": {"k"}, "concurrency": {"-1"}}, "The concurrency &#34;-1&#34; is not a whole number"},
		{url.Values{"key": {"k"}, "rate": {"5"}, "per": {"soon"}}, "The interval &#34;soon&#34; is not a duration"},
		{url.Values{"key": {"k"}, "per": {"1m"}}, "give the rate too"},
		{url.Values{"key": {"k"}, "weight": {"1001"}}, "weight 1001 is over 1000"},
		{url.Values{"key": {"k"}, "rate": {"1"}, "per": {"48h"}}, "is not between 1ms and 24h"},
	} {
		c.form.Set("do", "set")
		c.form.Set("csrf", tok[1])
		code, body := postForm(t, fx.srv.Client(), u, c.form, nil)
		if code != http.StatusBadRequest || !strings.Contains(body, c.want) || !strings.Contains(body, `value="`+c.form.Get("key")+`"`) {
			t.Fatalf("%v: %d, want 400 with %q\n%s", c.form, code, c.want, body)
		}
	}
	if code, _ := postForm(t, fx.srv.Client(), u, url.Values{"do": {"explode"}, "key": {"k"}, "csrf": {tok[1]}}, nil); code != http.StatusBadRequest {
		t.Fatalf("unknown action: %d", code)
	}
	if l := fx.keyLimits(t); len(l) != 0 {
		t.Fatalf("bad input set %+v", l)
	}

	// Set, then edit: the form is filled with the key's limit.
	if code, _ := postForm(t, fx.srv.Client(), u, set, nil); code != http.StatusSeeOther {
		t.Fatalf("set: %d", code)
	}
	if code, _ := postForm(t, fx.srv.Client(), u, url.Values{"do": {"set"}, "key": {"model:gpt-x"}, "rate": {"500"}, "per": {"1m"},
		"burst": {"50"}, "weight": {"2"}, "csrf": {tok[1]}}, nil); code != http.StatusSeeOther {
		t.Fatalf("set the model: %d", code)
	}
	l := fx.keyLimits(t)
	if len(l) != 2 || l[0].Key != "model:gpt-x" || l[0].Rate != 500 || l[0].Per != time.Minute || l[0].Burst != 50 || l[0].Weight != 2 ||
		l[1].Key != "tenant:acme" || l[1].Concurrency != 3 || l[1].Rate != 0 {
		t.Fatalf("after the sets: %+v", l)
	}
	_, page = get(t, fx.srv.Client(), u+"?done=set&key=model:gpt-x&edit=model:gpt-x")
	for _, want := range []string{"The limit of model:gpt-x is set", `data-key="tenant:acme"`, "500/1m", `id="limit-rate" value="500"`,
		`id="limit-per" value="1m"`, `id="limit-burst" value="50"`, `id="limit-weight" value="2"`} {
		if !strings.Contains(page, want) {
			t.Fatalf("limits page lacks %q:\n%s", want, page)
		}
	}
	// Delete.
	if code, _ := postForm(t, fx.srv.Client(), u, url.Values{"do": {"delete"}, "key": {"tenant:acme"}, "csrf": {tok[1]}}, nil); code != http.StatusSeeOther {
		t.Fatalf("delete: %d", code)
	}
	if l := fx.keyLimits(t); len(l) != 1 || l[0].Key != "model:gpt-x" {
		t.Fatalf("after the delete: %+v", l)
	}
}

func TestLimitsReadOnly(t *testing.T) {
	fx := newFixture(t, Config{ReadOnly: true})
	if err := fx.m.SetKeyLimit(context.Background(), taskflow.KeyLimit{Key: "tenant:acme", Concurrency: 2}); err != nil {
		t.Fatal(err)
	}
	u := fx.srv.URL + "/limits"
	code, page := get(t, fx.srv.Client(), u)
	if code != http.StatusOK || !strings.Contains(page, `data-key="tenant:acme"`) || strings.Contains(page, `<form method="post"`) {
		t.Fatalf("read-only limits page: %d\n%s", code, page)
	}
	for _, do := range []string{"set", "delete"} {
		if code, _ := postForm(t, fx.srv.Client(), u, url.Values{"do": {do}, "key": {"tenant:acme"}, "csrf": {fx.ui.csrf}}, nil); code != http.StatusForbidden {
			t.Fatalf("POST %s: %d", do, code)
		}
	}
	if l := fx.keyLimits(t); len(l) != 1 || l[0].Concurrency != 2 {
		t.Fatalf("limits changed: %+v", l)
	}
}
