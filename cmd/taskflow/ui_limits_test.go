package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/taskflow-dev/taskflow"
)

// TestLimitsInBrowser drives the dashboard's limits page in Chromium as
// an operator would: from the navigation to the page, setting limits
// with the form (checked in Redis), watching the workers' flows in
// flight and the backlog, raising a limit through a row's edit link (the
// next claim obeys it), deleting one, and from a flow's page, which shows
// its keys and priority, to its key's row.
func TestLimitsInBrowser(t *testing.T) {
	realURL, err := realRedis()
	if err != nil {
		if os.Getenv("TASKFLOW_TEST_REQUIRE_REDIS") == "1" {
			t.Fatalf("real Redis required: %v", err)
		}
		t.Skip("real Redis unreachable")
	}
	bctx := newBrowser(t)
	e := newTestEnv(t, realURL)
	ctx := context.Background()
	const ctl = "agents/support"
	mk := func(goal string, priority int, keys ...string) *taskflow.Flow {
		f, err := e.m.CreateMirrored(ctx, taskflow.CreateManagedInput{ControllerID: ctl, Goal: goal, OwnerSessionKey: ownerA,
			Concurrency: keys, Priority: priority})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // age orders a group's flows
		return f
	}
	claim := func() *taskflow.Flow {
		f, _, err := e.m.Claim(ctx, ctl, "worker-1", time.Minute, taskflow.WithClaimWait(0))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	e.create(ownerA, "the flow space exists")
	ui := startUI(t, e)

	browse(t, bctx, "overview", chromedp.Navigate(ui.base+"/"), chromedp.WaitVisible(chromedp.ID("overview")))
	browse(t, bctx, "limits page", chromedp.Click(chromedp.ID("nav-limits")), chromedp.WaitVisible(chromedp.ID("no-limits")))
	if cur := eval[string](t, bctx, `document.querySelector("nav a[aria-current=page]").id`); cur != "nav-limits" {
		t.Fatalf("current nav %q", cur)
	}

	// Set three limits with the form.
	for _, l := range []struct{ key, conc, rate, per, burst, weight string }{
		{"tenant:acme", "2", "", "", "", "3"},
		{"tenant:globex", "5", "", "", "", ""},
		{"model:gpt-x", "", "500", "1m", "50", ""},
	} {
		steps := []chromedp.Action[chromedp.Void]{chromedp.SendKeys(chromedp.ID("limit-key"), l.key)}
		for id, v := range map[string]string{"limit-concurrency": l.conc, "limit-rate": l.rate, "limit-per": l.per,
			"limit-burst": l.burst, "limit-weight": l.weight} {
			if v != "" {
				steps = append(steps, chromedp.SendKeys(chromedp.ID(id), v))
			}
		}
		steps = append(steps, chromedp.Click(chromedp.ID("action-set-limit")), chromedp.WaitVisible(chromedp.CSS(`#limits tr[data-key="`+l.key+`"]`)))
		browse(t, bctx, "set "+l.key, steps...)
		if n := textOf(t, bctx, "#notice"); !strings.Contains(n, "The limit of "+l.key+" is set") {
			t.Fatalf("notice %q", n)
		}
	}
	got, err := e.m.KeyLimits(ctx)
	if err != nil || len(got) != 3 || got[0].Key != "model:gpt-x" || got[0].Rate != 500 || got[0].Per != time.Minute || got[0].Burst != 50 ||
		got[1].Key != "tenant:acme" || got[1].Concurrency != 2 || got[1].Weight != 3 || got[2].Concurrency != 5 {
		t.Fatalf("limits in Redis: %+v %v", got, err)
	}

	// The workers claim what the limits admit.
	var acme []*taskflow.Flow
	for i := range 5 {
		acme = append(acme, mk(fmt.Sprintf("answer ticket #%d of acme", 100+i), 0, "tenant:acme", "model:gpt-x"))
	}
	for i := range 3 {
		mk(fmt.Sprintf("answer ticket #%d of globex", 200+i), 0, "tenant:globex", "model:gpt-x")
	}
	claimed := 0
	for f := claim(); f != nil; f = claim() {
		claimed++
	}
	if claimed != 5 {
		t.Fatalf("%d claims, want 5 (acme's 2 and globex's 3)", claimed)
	}
	// An urgent flow of acme, created last, waits for acme's limit.
	urgent := mk("reply to the CEO of acme", 7, "tenant:acme", "model:gpt-x")
	if f := claim(); f != nil {
		t.Fatalf("a claim over acme's limit: %s", f.ID)
	}
	browse(t, bctx, "reload", chromedp.Navigate(ui.base+"/limits"), chromedp.WaitVisible(chromedp.ID("limits")))
	row := func(key, field string) string {
		t.Helper()
		return strings.TrimSpace(textOf(t, bctx, `#limits tr[data-key="`+key+`"] [data-field="`+field+`"]`))
	}
	for _, c := range []struct{ key, field, want string }{
		{"tenant:acme", "in_flight", "2 at limit"}, {"tenant:acme", "concurrency", "2"}, {"tenant:acme", "backlog", "4"},
		{"tenant:acme", "weight", "3"}, {"tenant:acme", "rate", "-"},
		{"tenant:globex", "in_flight", "3"}, {"tenant:globex", "backlog", "0"},
		{"model:gpt-x", "in_flight", "5"}, {"model:gpt-x", "rate", "500/1m"}, {"model:gpt-x", "burst", "50"}, {"model:gpt-x", "concurrency", "-"},
	} {
		if g := row(c.key, c.field); g != c.want {
			t.Fatalf("%s %s shows %q, want %q", c.key, c.field, g, c.want)
		}
	}
	shot(t, bctx, "ui-limits.png")

	// Raise acme's limit through its edit link: the next claim takes
	// the urgent flow, the highest priority.
	browse(t, bctx, "edit", chromedp.Click(chromedp.CSS(`#limits a[data-edit="tenant:acme"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#limit-key[value="tenant:acme"]`)))
	if v := eval[string](t, bctx, `document.getElementById("limit-concurrency").value + "/" + document.getElementById("limit-weight").value`); v != "2/3" {
		t.Fatalf("the edit form holds %q", v)
	}
	browse(t, bctx, "raise", chromedp.SetValue(chromedp.ID("limit-concurrency"), "3"))
	clickToNewPage(t, bctx, "#action-set-limit", "#notice")
	if c := row("tenant:acme", "concurrency"); c != "3" {
		t.Fatalf("acme's concurrency shows %q after raising it to 3", c)
	}
	if f := claim(); f == nil || f.ID != urgent.ID {
		t.Fatalf("after raising the limit: %v, want the urgent flow %s", f, urgent.ID)
	}
	if f := claim(); f != nil {
		t.Fatalf("a claim over the raised limit of 3: %s", f.ID)
	}

	// Delete the model's limit.
	clickToNewPage(t, bctx, `#limits button[data-delete="model:gpt-x"]`, "#notice")
	if n := textOf(t, bctx, "#notice"); !strings.Contains(n, "The limit of model:gpt-x is deleted") {
		t.Fatalf("notice %q", n)
	}
	if n := eval[int](t, bctx, `document.querySelectorAll("#limits tr[data-key]").length`); n != 2 {
		t.Fatalf("%d keys listed after the delete, want 2", n)
	}
	if got, err := e.m.KeyLimits(ctx); err != nil || len(got) != 2 || got[0].Key != "tenant:acme" {
		t.Fatalf("limits in Redis after the delete: %+v %v", got, err)
	}

	// A flow's page shows its keys and priority, linking to the limits.
	browse(t, bctx, "flow page", chromedp.Navigate(ui.base+"/flows/"+urgent.ID.String()), chromedp.WaitVisible(chromedp.ID("record")))
	if k := textOf(t, bctx, `[data-field="concurrency keys"]`); !strings.Contains(k, "tenant:acme") || !strings.Contains(k, "model:gpt-x") {
		t.Fatalf("keys shown %q", k)
	}
	if p := textOf(t, bctx, `[data-field="priority"]`); strings.TrimSpace(p) != "7" {
		t.Fatalf("priority shown %q", p)
	}
	browse(t, bctx, "to the key", chromedp.Click(chromedp.CSS(`[data-field="concurrency keys"] a[data-key="tenant:acme"]`)),
		chromedp.WaitVisible(chromedp.ID("limits")))
	if loc := eval[string](t, bctx, `location.pathname + " " + (document.querySelector(":target") || {dataset: {}}).dataset.key`); loc != "/limits tenant:acme" {
		t.Fatalf("at %s, want /limits with tenant:acme's row the target", loc)
	}
	browse(t, bctx, "plain flow", chromedp.Navigate(ui.base+"/flows/"+acme[4].ID.String()), chromedp.WaitVisible(chromedp.ID("record")))
	if n := eval[int](t, bctx, `document.querySelectorAll('[data-field="priority"]').length`); n != 0 {
		t.Fatal("a flow of priority 0 shows a priority")
	}
}
