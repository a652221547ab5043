package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/internal/testbackend"
)

// The dashboard is tested the way an operator uses it: the built binary
// serves it against a real Redis filled by the demo, and headless
// Chromium (Debian's chromium package; .ci/run installs it) loads the
// pages, runs their JavaScript, fills the forms and clicks.

// hostileGoal is markup a model might write into a goal.
const hostileGoal = `<script>window.pwned=1</script>"><img src=x onerror="window.pwned=2">`

// browserNames are the executables the browser tests look for on PATH.
var browserNames = []string{"chromium", "chromium-browser", "google-chrome"}

// findBrowser finds the browser with look (exec.LookPath). When none is
// found it says why the test skips, or, when the browser is required
// (TASKFLOW_TEST_REQUIRE_BROWSER=1, as in CI), returns an error.
func findBrowser(look func(string) (string, error), require bool) (path, skip string, err error) {
	for _, name := range browserNames {
		if p, err := look(name); err == nil {
			return p, "", nil
		}
	}
	const need = "no chromium on PATH (looked for chromium, chromium-browser, google-chrome; Debian: apt-get install chromium)"
	if require {
		return "", "", errors.New(need + ", and TASKFLOW_TEST_REQUIRE_BROWSER=1 requires it")
	}
	return "", need + "; TASKFLOW_TEST_REQUIRE_BROWSER=1 makes this a failure", nil
}

// chromiumPath finds the browser, or skips the test (fails it when
// TASKFLOW_TEST_REQUIRE_BROWSER=1, as in CI).
func chromiumPath(t *testing.T) string {
	t.Helper()
	p, skip, err := findBrowser(exec.LookPath, os.Getenv("TASKFLOW_TEST_REQUIRE_BROWSER") == "1")
	if err != nil {
		t.Fatal(err)
	}
	if skip != "" {
		t.Skip(skip)
	}
	return p
}

// TestFindBrowser: a missing browser is a failure when it is required
// (as .ci/run requires it), else a skip that says what is missing and
// how to require it.
func TestFindBrowser(t *testing.T) {
	none := func(string) (string, error) { return "", exec.ErrNotFound }
	if _, _, err := findBrowser(none, true); err == nil || !strings.Contains(err.Error(), "TASKFLOW_TEST_REQUIRE_BROWSER=1") {
		t.Fatalf("required and missing: %v", err)
	}
	if _, skip, err := findBrowser(none, false); err != nil || !strings.Contains(skip, "apt-get install chromium") || !strings.Contains(skip, "TASKFLOW_TEST_REQUIRE_BROWSER=1") {
		t.Fatalf("missing: skip %q, %v", skip, err)
	}
	second := func(name string) (string, error) {
		if name == "chromium-browser" {
			return "/usr/bin/chromium-browser", nil
		}
		return "", exec.ErrNotFound
	}
	if p, skip, err := findBrowser(second, true); p != "/usr/bin/chromium-browser" || skip != "" || err != nil {
		t.Fatalf("found: %q %q %v", p, skip, err)
	}
	// .ci/run requires it.
	ci, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ci), "export TASKFLOW_TEST_REQUIRE_BROWSER=1") {
		t.Fatal(".ci/run does not require the browser")
	}
}

// uiServer is a running `taskflow ui`.
type uiServer struct {
	base string
	cmd  *exec.Cmd
}

func startUI(t *testing.T, e *testEnv, extra ...string) *uiServer {
	t.Helper()
	return startUIArgs(t, append([]string{"--redis", e.url, "--prefix", e.prefix}, extra...)...)
}

// startUIArgs starts `taskflow ui` on a free loopback port with args.
func startUIArgs(t *testing.T, args ...string) *uiServer {
	t.Helper()
	args = append([]string{"ui", "--addr", "127.0.0.1:0"}, args...)
	cmd := exec.Command(binPath, args...)
	cmd.Env = cliEnv()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	// The banner names the address the kernel picked.
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("ui did not start: %v", err)
	}
	i := strings.Index(line, "http://")
	if i < 0 {
		t.Fatalf("banner %q", line)
	}
	base := strings.TrimSuffix(strings.Fields(line[i:])[0], "/")
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return &uiServer{base: base, cmd: cmd}
}

func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1300, 1000),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// browse runs steps in the browser, each batch within stepTimeout.
func browse(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

const stepTimeout = 30 * time.Second

func textOf(t *testing.T, ctx context.Context, css string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(css)))
	if err != nil {
		t.Fatalf("text of %s: %v", css, err)
	}
	return s
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func shot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("TASKFLOW_UI_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// clickToNewPage clicks sel and waits until a new document holding ready
// has loaded.
func clickToNewPage(t *testing.T, ctx context.Context, sel, ready string) {
	t.Helper()
	eval[bool](t, ctx, `window.__stale = true`)
	browse(t, ctx, "click "+sel, chromedp.Click(chromedp.CSS(sel)))
	q, _ := json.Marshal(ready)
	expr := `!window.__stale && document.readyState === "complete" && document.querySelector(` + string(q) + `) !== null`
	// The navigation interrupts an evaluation under way: ask again.
	deadline := time.Now().Add(stepTimeout)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after clicking %s, no page with %s (%v)", sel, ready, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// shotOf saves a screenshot of the element css selects, as shot does.
func shotOf(t *testing.T, ctx context.Context, css, name string) {
	dir := os.Getenv("TASKFLOW_UI_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS(css)))
	if err != nil {
		t.Fatalf("screenshot of %s: %v", css, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDashboardInBrowser(t *testing.T) {
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
	// Fill the flow space with the demo, as an operator would see it.
	e.run("demo", "--flows", "60").wantCode(t, 0)
	// Flows in flight: a hostile goal under a lease, and a waiting one.
	hostile := e.running("agent:mallory:session:s1", hostileGoal)
	if _, _, err := e.m.Claim(ctx, hostile.ControllerID, "worker-7", time.Hour, taskflow.WithClaimWait(time.Second)); err != nil {
		t.Fatal(err)
	}
	waiting := e.waiting("agent:kate:session:s2", taskflow.WaitTimer(time.Now().Add(48*time.Hour)))

	ui := startUI(t, e, "--metrics")

	t.Run("overview matches Stats", func(t *testing.T) {
		browse(t, bctx, "overview", chromedp.Navigate(ui.base+"/"), chromedp.WaitVisible(chromedp.ID("overview")))
		st, err := e.m.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range taskflow.Statuses() {
			// Stats, and an independent count through the listing.
			all, err := e.m.ListByStatus(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			shown := textOf(t, bctx, `[data-stat="status.`+string(s)+`"]`)
			if shown != strconv.FormatInt(st.Flows[s], 10) || shown != strconv.Itoa(len(all)) {
				t.Errorf("overview says %s %s; Stats %d, listing %d", shown, s, st.Flows[s], len(all))
			}
		}
		for stat, want := range map[string]int64{
			"leases_held": st.Leases.Held, "leases_expired": st.Leases.Expired,
			"bridge_backlog": st.Bridge.Backlog, "bridge_pending": st.Bridge.Pending, "early_events": st.EarlyEvents,
			"joining": st.Joining, "relay": st.Relay, "relay_due": st.RelayDue, "ready_stale": st.ReadyStale,
		} {
			if shown := textOf(t, bctx, `[data-stat="`+stat+`"]`); shown != strconv.FormatInt(want, 10) {
				t.Errorf("overview says %s %s, Stats %d", stat, shown, want)
			}
		}
		if st.Leases.Held != 1 {
			t.Errorf("Stats: %d leases held, want 1", st.Leases.Held)
		}
		for _, q := range st.Ready {
			if shown := textOf(t, bctx, `[data-stat="ready.`+q.Controller+`"]`); shown != strconv.FormatInt(q.Depth, 10) {
				t.Errorf("ready queue %s: overview %s, Stats %d", q.Controller, shown, q.Depth)
			}
			if shown := textOf(t, bctx, `[data-stat="ready_stale.`+q.Controller+`"]`); shown != strconv.FormatInt(q.Stale, 10) {
				t.Errorf("ready queue %s: overview %s stale, Stats %d", q.Controller, shown, q.Stale)
			}
		}
		shot(t, bctx, "ui-overview.png")
	})

	t.Run("metrics on the same server", func(t *testing.T) {
		resp, err := http.Get(ui.base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `taskflow_flows{status="waiting"} 1`) {
			t.Fatalf("/metrics: %d\n%.2000s", resp.StatusCode, body)
		}
	})

	t.Run("flows table wraps no word at 1400 px", func(t *testing.T) {
		// Rows as a busy fleet has them: long controller ids, goals,
		// steps, waits on events and lease holders.
		for i := range 6 {
			f, err := e.m.CreateManaged(ctx, taskflow.CreateManagedInput{
				ControllerID:    fmt.Sprintf("billing/invoice-reconciliation-controller-%d", i),
				Goal:            "reconcile the March invoices of every customer in the EU region against the payment provider's settlement reports and flag mismatches",
				OwnerSessionKey: "agent:accounting:session:2026-03-reconciliation",
				CurrentStep:     "fetch-settlement-reports-page-17",
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.m.StartRunning(ctx, f.ID); err != nil {
				t.Fatal(err)
			}
			switch i % 3 {
			case 0:
				_, err = e.m.SetWaiting(ctx, f.ID, taskflow.WaitExternalEvent("payments.stripe.checkout.session.completed", fmt.Sprintf("cs_live_a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6-%d", i)))
			case 1:
				_, err = e.m.SetWaiting(ctx, f.ID, taskflow.WaitTimer(time.Now().Add(36*time.Hour)))
			case 2:
				_, _, err = e.m.Claim(ctx, f.ControllerID, "reconciliation-worker-eu-west-1-pod-7f9c", time.Hour, taskflow.WithClaimWait(time.Second))
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, status := range []string{"running", "waiting", "finished"} {
			browse(t, bctx, "list "+status, chromedp.EmulateViewport(1400, 1000),
				chromedp.Navigate(ui.base+"/flows?status="+status), chromedp.WaitVisible(chromedp.ID("flows")))
			rows := eval[int](t, bctx, `document.querySelectorAll("#flows tbody tr").length`)
			split := eval[[]string](t, bctx, splitWordsJS)
			overflow := eval[bool](t, bctx, `document.documentElement.scrollWidth > window.innerWidth ||
				document.getElementById("flows").offsetWidth > document.getElementById("flows-scroll").clientWidth`)
			if rows == 0 || len(split) > 0 || overflow {
				t.Errorf("%s flows at 1400 px: %d rows, words split across lines %q, wider than the window %v", status, rows, split, overflow)
			}
			shot(t, bctx, "ui-flows-"+status+".png")
		}
	})

	t.Run("hostile goal renders as text", func(t *testing.T) {
		browse(t, bctx, "flow page", chromedp.Navigate(ui.base+"/flows/"+hostile.ID.String()),
			chromedp.WaitVisible(chromedp.ID("record")))
		goal := textOf(t, bctx, `[data-field="goal"]`)
		pwned := eval[bool](t, bctx, `typeof window.pwned !== "undefined"`)
		imgs := eval[int](t, bctx, `document.querySelectorAll("main img").length`)
		if goal != hostileGoal || pwned || imgs != 0 {
			t.Fatalf("goal %q, pwned %v, %d img elements", goal, pwned, imgs)
		}
		if lease := textOf(t, bctx, "#lease"); !strings.Contains(lease, "worker-7") || !strings.Contains(lease, "expires in") {
			t.Fatalf("lease shown as %q", lease)
		}
		// The flows list escapes it too.
		browse(t, bctx, "list", chromedp.Navigate(ui.base+"/flows?status=running"), chromedp.WaitVisible(chromedp.ID("flows")))
		pwned = eval[bool](t, bctx, `typeof window.pwned !== "undefined"`)
		imgs = eval[int](t, bctx, `document.querySelectorAll("main img").length`)
		if pwned || imgs != 0 {
			t.Fatalf("list page: pwned %v, %d img elements", pwned, imgs)
		}
	})

	t.Run("explain panel on a stuck flow and a healthy one", func(t *testing.T) {
		// Started five minutes ago on a controller no worker claims for.
		past := time.Now().Add(-5*time.Minute - 10*time.Second)
		f, err := e.manager(func() time.Time { return past }).CreateManaged(ctx, taskflow.CreateManagedInput{
			ControllerID: "billing/invoice-reconciler", Goal: "reconcile the March invoices",
			OwnerSessionKey: "agent:accounting:session:s3",
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.manager(func() time.Time { return past }).StartRunning(ctx, f.ID); err != nil {
			t.Fatal(err)
		}
		browse(t, bctx, "stuck flow", chromedp.Navigate(ui.base+"/flows/"+f.ID.String()), chromedp.WaitVisible(chromedp.ID("explain")))
		badge := textOf(t, bctx, "#explain-stuck")
		code := textOf(t, bctx, "#explain-code")
		text := textOf(t, bctx, "#explain-text")
		moves := textOf(t, bctx, "#explain-moves")
		keys := eval[[]string](t, bctx, `Array.from(document.querySelectorAll("#explain-facts dt")).map(dt => dt.textContent)`)
		// The facts the library gives, sorted (the demo's engine ticked:
		// last_tick is among them).
		x, err := e.m.Explain(ctx, f.ID)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for k := range x.Facts {
			want = append(want, k)
		}
		sort.Strings(want)
		if badge != "stuck" || code != "ready" ||
			text != `The flow has been ready for 5m, on controller "billing/invoice-reconciler"'s queue, for a worker to claim. No worker waits for that controller's flows.` ||
			moves != `What moves it: A worker's Claim for controller "billing/invoice-reconciler".` ||
			strings.Join(keys, " ") != strings.Join(want, " ") || !slices.Contains(keys, "waiting_workers") {
			t.Fatalf("stuck flow's panel: badge %q, code %q, text %q, moves %q, facts %q", badge, code, text, moves, keys)
		}
		if w, c := textOf(t, bctx, `[data-fact="waiting_workers"]`), textOf(t, bctx, `[data-fact="controller_id"]`); w != "0" || c != "billing/invoice-reconciler" {
			t.Fatalf("stuck flow's facts: waiting_workers %q, controller_id %q", w, c)
		}
		shotOf(t, bctx, "#explain", "ui-explain.png")

		// The hostile flow is held under a live lease: healthy, no badge,
		// and its hostile goal left nothing to run.
		browse(t, bctx, "leased flow", chromedp.Navigate(ui.base+"/flows/"+hostile.ID.String()), chromedp.WaitVisible(chromedp.ID("explain")))
		badges := eval[int](t, bctx, `document.querySelectorAll("#explain-stuck, #explain.stuck").length`)
		code = textOf(t, bctx, "#explain-code")
		text = textOf(t, bctx, "#explain-text")
		worker := textOf(t, bctx, `[data-fact="worker_id"]`)
		pwned := eval[bool](t, bctx, `typeof window.pwned !== "undefined"`)
		if badges != 0 || code != "leased" || !strings.Contains(text, "worker-7") || !strings.Contains(text, "holds the flow under a lease that expires in") ||
			worker != "worker-7" || pwned {
			t.Fatalf("leased flow's panel: %d stuck marks, code %q, text %q, worker_id %q, pwned %v", badges, code, text, worker, pwned)
		}
	})

	t.Run("filter by controller and attribute, page, open a flow", func(t *testing.T) {
		// 55 flows match (a page of 50, the dashboard's page size, and one
		// of 5); others share the controller or the attribute only.
		const ctl = "billing/find-invoices"
		mk := func(controller string, attrs map[string]string) *taskflow.Flow {
			f, err := e.m.CreateMirrored(ctx, taskflow.CreateManagedInput{
				ControllerID: controller, Goal: "send the invoice", OwnerSessionKey: "agent:billing:session:s9", Attributes: attrs,
			})
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
		want := map[string]bool{}
		var waitingAcme []string
		for i := range 55 {
			f := mk(ctl, map[string]string{"customer": "acme", "region": []string{"eu", "us"}[i%2]})
			want[f.ID.String()] = true
			if i < 4 {
				if _, err := e.m.SetWaiting(ctx, f.ID, taskflow.WaitManual()); err != nil {
					t.Fatal(err)
				}
				waitingAcme = append(waitingAcme, f.ID.String())
			}
		}
		for range 3 {
			mk(ctl, map[string]string{"customer": "globex"})
			mk("billing/find-refunds", map[string]string{"customer": "acme"})
		}
		if _, err := e.m.SetWaiting(ctx, mk(ctl, map[string]string{"customer": "globex"}).ID, taskflow.WaitManual()); err != nil {
			t.Fatal(err)
		}
		rowIDs := func() []string {
			return eval[[]string](t, bctx, `Array.from(document.querySelectorAll("#flows tbody a.mono")).map(a => a.textContent)`)
		}
		wantQuery := func(what string, q url.Values) {
			t.Helper()
			loc, err := chromedp.Run(bctx, chromedp.Location())
			if err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(loc)
			if err != nil {
				t.Fatal(err)
			}
			for k := range q {
				if u.Query().Get(k) != q.Get(k) {
					t.Fatalf("%s: URL %s, want %s=%q", what, loc, k, q.Get(k))
				}
			}
			for id, v := range map[string]string{"f-status": q.Get("status"), "f-controller": q.Get("controller"), "f-attr": q.Get("attr")} {
				if got, err := chromedp.Run(bctx, chromedp.Value(chromedp.ID(id))); err != nil || got != v {
					t.Fatalf("%s: the form's %s holds %q (%v), want %q", what, id, got, err, v)
				}
			}
		}

		browse(t, bctx, "flows page", chromedp.EmulateViewport(1400, 1000),
			chromedp.Navigate(ui.base+"/flows"), chromedp.WaitVisible(chromedp.ID("filters")),
			chromedp.SetValue(chromedp.ID("f-status"), ""),
			chromedp.SetValue(chromedp.ID("f-controller"), ctl),
			chromedp.SetValue(chromedp.ID("f-attr"), "customer=acme"))
		clickToNewPage(t, bctx, "#f-submit", "#flows")
		filters := url.Values{"status": {""}, "controller": {ctl}, "attr": {"customer=acme"}}
		wantQuery("filtered", filters)
		first := rowIDs()
		attrCells := eval[int](t, bctx, `document.querySelectorAll("#flows tbody code.attr[data-attr=customer]").length`)
		if len(first) != 50 || attrCells != 50 {
			t.Fatalf("first page: %d rows, %d customer cells, want 50", len(first), attrCells)
		}
		clickToNewPage(t, bctx, "#next", "#flows")
		wantQuery("next page", filters)
		second := rowIDs()
		seen := map[string]bool{}
		for _, id := range append(first, second...) {
			if !want[id] || seen[id] {
				t.Fatalf("flow %s listed but not matching, or twice (matching %v, seen %v)", id, want[id], seen[id])
			}
			seen[id] = true
		}
		if len(seen) != len(want) {
			t.Fatalf("listed %d flows over two pages, want the %d matching", len(seen), len(want))
		}
		if n := eval[int](t, bctx, `document.querySelectorAll("#next").length`); n != 0 {
			t.Fatal("a next link after the last page")
		}
		clickToNewPage(t, bctx, "#first", "#flows")
		wantQuery("first page again", filters)
		if again := rowIDs(); strings.Join(again, ",") != strings.Join(first, ",") {
			t.Fatalf("the first page link shows other flows")
		}

		// Narrow to waiting through the form: exactly the four.
		browse(t, bctx, "status", chromedp.SetValue(chromedp.ID("f-status"), "waiting"))
		clickToNewPage(t, bctx, "#f-submit", "#flows")
		filters.Set("status", "waiting")
		wantQuery("waiting", filters)
		got := rowIDs()
		sort.Strings(got)
		sort.Strings(waitingAcme)
		if strings.Join(got, ",") != strings.Join(waitingAcme, ",") {
			t.Fatalf("waiting acme flows listed %v, want %v", got, waitingAcme)
		}
		if title := textOf(t, bctx, "h1"); title != "Flows: waiting (controller "+ctl+", attribute customer=acme)" {
			t.Fatalf("title %q", title)
		}
		shot(t, bctx, "ui-find.png")

		// Open a flow: its attributes, each a link to the flows sharing it.
		clickToNewPage(t, bctx, "#flows tbody a.mono", "#attributes")
		customer, region := textOf(t, bctx, `#attributes [data-attr="customer"]`), textOf(t, bctx, `#attributes [data-attr="region"]`)
		href := eval[string](t, bctx, `document.querySelector('#attributes [data-attr="customer"] a').getAttribute("href")`)
		if customer != "acme" || (region != "eu" && region != "us") || href != "/flows?attr=customer%3Dacme&status=" {
			t.Fatalf("attributes: customer %q, region %q, link %q", customer, region, href)
		}
		if textOf(t, bctx, "#explain-code") == "" {
			t.Fatal("the explain panel is gone from the flow page")
		}

		// A malformed attribute is said, not listed.
		resp, err := http.Get(ui.base + "/flows?attr=Customer%3Dacme")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "may hold only") {
			t.Fatalf("bad attribute: %d\n%.600s", resp.StatusCode, body)
		}
	})

	t.Run("flow page updates live", func(t *testing.T) {
		browse(t, bctx, "open", chromedp.Navigate(ui.base+"/flows/"+waiting.ID.String()),
			chromedp.WaitVisible(chromedp.ID("events")))
		before := eval[int](t, bctx, `document.querySelectorAll("#events li").length`)
		// The page subscribes once loaded; a few appends cover the moment
		// between the page's load and its subscription.
		deadline := time.Now().Add(30 * time.Second)
		for n := 0; ; n++ {
			if _, err := e.m.UpdateState(ctx, waiting.ID, map[string]any{"note": fmt.Sprintf("operator check %d", n)}, ""); err != nil {
				t.Fatal(err)
			}
			tctx, cancel := context.WithTimeout(bctx, 2*time.Second)
			err := chromedp.Do(tctx, chromedp.WaitVisible(chromedp.CSS("#events li.new")))
			cancel()
			if err == nil {
				got := eval[int](t, bctx, `document.querySelectorAll("#events li").length`)
				kind := textOf(t, bctx, "#events li.new .kind")
				if got <= before || kind != string(taskflow.EventStateUpdated) {
					t.Fatalf("timeline has %d entries (was %d), newest %q", got, before, kind)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the appended event never appeared on the page")
			}
		}
		shot(t, bctx, "ui-flow.png")
	})

	t.Run("cancel with a reason is recorded", func(t *testing.T) {
		browse(t, bctx, "cancel",
			chromedp.Navigate(ui.base+"/flows/"+hostile.ID.String()),
			chromedp.Click(chromedp.ID("action-cancel")),
			chromedp.WaitVisible(chromedp.ID("confirm-form")),
			chromedp.SendKeys(chromedp.ID("operator"), "olga"),
			chromedp.SendKeys(chromedp.ID("reason"), "looping on the same step since Monday"),
			chromedp.Click(chromedp.ID("confirm")),
			chromedp.WaitVisible(chromedp.ID("notice")),
		)
		if notice := textOf(t, bctx, "#notice"); !strings.Contains(notice, "cancelled") {
			t.Fatalf("notice %q", notice)
		}
		if f := e.get(hostile.ID); f.Status != taskflow.StatusCancelled {
			t.Fatalf("flow is %s", f.Status)
		}
		evs, err := e.m.ListEvents(ctx, hostile.ID, 1)
		if err != nil || len(evs) != 1 || evs[0].Kind != taskflow.EventCancelled {
			t.Fatalf("newest event %v %v", evs, err)
		}
		checkCancelAudit(t, evs[0].Payload, "olga", "looping on the same step since Monday")
	})

	t.Run("read-only mode allows no action", func(t *testing.T) {
		ro := startUI(t, e, "--read-only")
		browse(t, bctx, "read-only page", chromedp.Navigate(ro.base+"/flows/"+waiting.ID.String()),
			chromedp.WaitVisible(chromedp.ID("record")))
		actions := eval[int](t, bctx, `document.querySelectorAll(".actions a, form[method=post]").length`)
		badge := textOf(t, bctx, "#read-only")
		if actions != 0 || badge != "read-only" {
			t.Fatalf("%d actions offered, badge %q", actions, badge)
		}
		before := e.get(waiting.ID)
		for _, a := range []string{"cancel", "resume", "requeue"} {
			resp, err := http.PostForm(ro.base+"/flows/"+waiting.ID.String()+"/"+a,
				url.Values{"reason": {"x"}, "operator": {"mallory"}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("direct POST %s: %d, want 403", a, resp.StatusCode)
			}
		}
		after := e.get(waiting.ID)
		if after.Status != before.Status || after.Revision != before.Revision {
			t.Fatalf("flow changed under read-only: %s/%d -> %s/%d", before.Status, before.Revision, after.Status, after.Revision)
		}
	})

	t.Run("a parent's children, to a child and back", func(t *testing.T) {
		// 55 children: a page of 50 (the dashboard's page size) and one
		// of 5; one key is markup.
		parent := e.running(ownerA, "fan out to 55 parts")
		keys := make([]string, 55)
		for i := range keys {
			keys[i] = fmt.Sprintf("part-%02d", i)
		}
		keys[1] = hostileGoal
		kids := e.startChildren(parent.ID, keys...)
		if _, err := e.m.SetWaiting(ctx, parent.ID, taskflow.WaitChildren(taskflow.Join{Need: 50})); err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.Finish(ctx, kids[0].ID, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.Fail(ctx, kids[2].ID, "no such part"); err != nil {
			t.Fatal(err)
		}
		parentPath := "/flows/" + parent.ID.String()
		browse(t, bctx, "parent page", chromedp.Navigate(ui.base+parentPath), chromedp.WaitVisible(chromedp.ID("children")))
		rows := eval[int](t, bctx, `document.querySelectorAll("#children tbody tr[data-child]").length`)
		heading := textOf(t, bctx, "#children-heading")
		join := textOf(t, bctx, "#join")
		first := textOf(t, bctx, `#children tr[data-child="`+kids[0].ID.String()+`"]`)
		failed := textOf(t, bctx, `#children tr[data-child="`+kids[2].ID.String()+`"]`)
		if rows != 50 || heading != "Children (55)" ||
			!strings.Contains(join, "need 50 of 55") || !strings.Contains(join, "1 finished · 1 failed · 0 cancelled · 53 pending") ||
			!strings.Contains(first, "part-00") || !strings.Contains(first, "finished") || !strings.Contains(first, "yes") ||
			!strings.Contains(failed, "failed") {
			t.Fatalf("parent page: %d rows, heading %q, join %q, first child %q, third %q", rows, heading, join, first, failed)
		}
		shot(t, bctx, "ui-parent.png")

		// To the child with the hostile key, and back by its parent link.
		browse(t, bctx, "to the child", chromedp.Click(chromedp.CSS(`#children tr[data-child="`+kids[1].ID.String()+`"] a`)),
			chromedp.WaitVisible(chromedp.ID("parent-link")))
		where := eval[string](t, bctx, `location.pathname`)
		key := textOf(t, bctx, "#child-key")
		pwned := eval[bool](t, bctx, `typeof window.pwned !== "undefined"`)
		imgs := eval[int](t, bctx, `document.querySelectorAll("main img").length`)
		if where != "/flows/"+kids[1].ID.String() || key != hostileGoal || pwned || imgs != 0 {
			t.Fatalf("child page: at %s, key %q, pwned %v, %d img elements", where, key, pwned, imgs)
		}
		browse(t, bctx, "back to the parent", chromedp.Click(chromedp.ID("parent-link")), chromedp.WaitVisible(chromedp.ID("children")))
		if where = eval[string](t, bctx, `location.pathname`); where != parentPath {
			t.Fatalf("the parent link led to %s, want %s", where, parentPath)
		}

		// The second page, its cursor in the URL.
		browse(t, bctx, "next page of children", chromedp.Click(chromedp.ID("children-next")), chromedp.WaitVisible(chromedp.ID("children-first")))
		search := eval[string](t, bctx, `location.search`)
		rows = eval[int](t, bctx, `document.querySelectorAll("#children tbody tr[data-child]").length`)
		last := eval[bool](t, bctx, `document.querySelector('#children tr[data-child="`+kids[54].ID.String()+`"]') !== null`)
		next := eval[int](t, bctx, `document.querySelectorAll("#children-next").length`)
		if !strings.HasPrefix(search, "?children_cursor=") || rows != 5 || !last || next != 0 {
			t.Fatalf("second page: search %q, %d rows, last child shown %v, %d next links", search, rows, last, next)
		}
		browse(t, bctx, "first page again", chromedp.Click(chromedp.ID("children-first")), chromedp.WaitVisible(chromedp.ID("children-next")))
		if rows = eval[int](t, bctx, `document.querySelectorAll("#children tbody tr[data-child]").length`); rows != 50 {
			t.Fatalf("first page again: %d rows", rows)
		}
	})
}

// checkCancelAudit checks that a cancelled event names the operator and
// the reason.
func checkCancelAudit(t *testing.T, payload json.RawMessage, operator, reason string) {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal(payload, &p); err != nil {
		t.Fatalf("payload %s: %v", payload, err)
	}
	s := string(payload)
	if !strings.Contains(s, operator) || !strings.Contains(s, reason) {
		t.Fatalf("cancelled event %s does not name the operator and the reason", s)
	}
}

// splitWordsJS lists the words of the flows table that the browser broke
// over two lines inside the word ("controlle|r", "wait|ing"), as
// "before|after". A break beside punctuation ("billing/invoice-|
// reconciliation", "</script>\">|<img") reads as natural and is allowed,
// but not in a header, a flow id, a status or an age, which must not
// break at all.
const splitWordsJS = `(() => {
  const split = [];
  const alnum = /[\p{L}\p{N}]/u;
  document.querySelectorAll("#flows td, #flows th").forEach(cell => {
    const strict = cell.tagName === "TH" || [1, 2, 9].includes(cell.cellIndex + 1);
    const walk = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      for (const m of n.data.matchAll(/\S+/g)) {
        const w = m[0];
        let prev = null;
        for (let i = 0; i < w.length; i++) {
          const r = document.createRange();
          r.setStart(n, m.index + i);
          r.setEnd(n, m.index + i + 1);
          const box = Array.from(r.getClientRects()).find(x => x.width > 0);
          if (!box) continue;
          const top = Math.round(box.top);
          if (prev !== null && top > prev + 2 && (strict || (alnum.test(w[i - 1]) && alnum.test(w[i])))) {
            split.push(w.slice(0, i) + "|" + w.slice(i));
          }
          prev = top;
        }
      }
    }
  });
  return split;
})()`

// request sends one request to a running dashboard, with Host host when
// set, and returns the status and the body.
func (u *uiServer) request(t *testing.T, method, path, host string, form url.Values, hdr map[string]string) (int, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// TestUIOverHTTP drives the built dashboard with plain HTTP requests: a
// DNS-rebound page (another Host, with the page's own CSRF token and a
// matching Origin) gets 403 and cancels nothing; --allowed-hosts admits
// a name; cancelling a cancelled flow says so plainly; a mistyped
// --prefix is hinted at.
func TestUIOverHTTP(t *testing.T) {
	realURL, err := realRedis()
	if err != nil {
		if os.Getenv("TASKFLOW_TEST_REQUIRE_REDIS") == "1" {
			t.Fatalf("real Redis required: %v", err)
		}
		t.Skip("real Redis unreachable")
	}
	e := newTestEnv(t, realURL)
	ctx := context.Background()
	f := e.running(ownerA, "rebinding target")
	ui := startUI(t, e, "--allowed-hosts", "dash.internal, ops.example")
	_, port, _ := strings.Cut(strings.TrimPrefix(ui.base, "http://"), ":")

	t.Run("a rebound Host is refused", func(t *testing.T) {
		evil := "evil.example:" + port
		_, page := ui.request(t, http.MethodGet, "/flows/"+f.ID.String()+"/cancel", "", nil, nil)
		tok := csrfField.FindStringSubmatch(page)
		if tok == nil {
			t.Fatal("no CSRF token on the confirmation page")
		}
		if code, body := ui.request(t, http.MethodGet, "/flows/"+f.ID.String(), evil, nil, nil); code != http.StatusForbidden || strings.Contains(body, "rebinding target") {
			t.Fatalf("GET with Host %s: %d", evil, code)
		}
		code, _ := ui.request(t, http.MethodPost, "/flows/"+f.ID.String()+"/cancel", evil,
			url.Values{"csrf": {tok[1]}, "operator": {"mallory"}, "reason": {"rebound"}},
			map[string]string{"Origin": "http://" + evil, "Sec-Fetch-Site": "same-origin"})
		if code != http.StatusForbidden {
			t.Fatalf("rebound POST: %d, want 403", code)
		}
		if g := e.get(f.ID); g.Status != taskflow.StatusRunning {
			t.Fatalf("the flow is %s after a rebound POST", g.Status)
		}
		for _, host := range []string{"localhost:" + port, "127.0.0.1:" + port, "dash.internal:" + port, "ops.example"} {
			if code, _ := ui.request(t, http.MethodGet, "/flows", host, nil, nil); code != http.StatusOK {
				t.Errorf("Host %s: %d, want 200", host, code)
			}
		}
	})

	t.Run("cancelling a cancelled flow says so", func(t *testing.T) {
		_, page := ui.request(t, http.MethodGet, "/flows/"+f.ID.String()+"/cancel", "", nil, nil)
		tok := csrfField.FindStringSubmatch(page)
		if tok == nil {
			t.Fatal("no CSRF token on the confirmation page")
		}
		if _, err := e.m.Cancel(ctx, f.ID); err != nil {
			t.Fatal(err)
		}
		code, body := ui.request(t, http.MethodPost, "/flows/"+f.ID.String()+"/cancel", "",
			url.Values{"csrf": {tok[1]}, "operator": {"olga"}, "reason": {"twice"}}, map[string]string{"Origin": ui.base})
		want := "Flow " + f.ID.String() + " is already cancelled: there is nothing to cancel."
		if code != http.StatusConflict || !strings.Contains(body, want) || strings.Contains(body, "confirm-form") || strings.Contains(body, "cannot move") {
			t.Fatalf("second cancel: %d\n%s", code, body)
		}
	})

	t.Run("a mistyped prefix is hinted at", func(t *testing.T) {
		typo := startUIArgs(t, "--redis", e.url, "--prefix", e.prefix+"x")
		code, body := typo.request(t, http.MethodGet, "/", "", nil, nil)
		if code != http.StatusOK || !strings.Contains(body, `id="hint"`) || !strings.Contains(body, "no flow space &#34;"+e.prefix+"x&#34;") {
			t.Fatalf("overview of a mistyped prefix: %d\n%s", code, body)
		}
		if _, body := ui.request(t, http.MethodGet, "/", "", nil, nil); strings.Contains(body, `id="hint"`) {
			t.Fatal("a hint on the overview of a flow space that exists")
		}
	})
}

// TestUIWithRedisDown: once its Redis is gone, the built dashboard
// answers every page 503 "Redis is unreachable", not an empty overview.
func TestUIWithRedisDown(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("TASKFLOW_TEST_REQUIRE_REDIS") == "1" {
			t.Fatal("redis-server is required")
		}
		t.Skip("redis-server not on PATH")
	}
	srv := testbackend.StartRedisServer(t)
	c := srv.Client(t)
	store, err := taskflow.NewRedisStore(c, taskflow.WithPrefix("uidown"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := taskflow.NewManager(store).CreateManaged(context.Background(), taskflow.CreateManagedInput{
		ControllerID: "ops/down", Goal: "g", OwnerSessionKey: ownerA,
	})
	if err != nil {
		t.Fatal(err)
	}
	ui := startUIArgs(t, "--redis", "redis://"+srv.Addr()+"/0", "--prefix", "uidown")
	if code, _ := ui.request(t, http.MethodGet, "/", "", nil, nil); code != http.StatusOK {
		t.Fatalf("overview with Redis up: %d", code)
	}
	srv.Kill()
	for _, path := range []string{"/", "/flows", "/flows/" + f.ID.String(), "/api/stats", "/flows/" + f.ID.String() + "/live"} {
		code, body := ui.request(t, http.MethodGet, path, "", nil, nil)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "Redis is unreachable") || strings.Contains(body, "No stats source") {
			t.Errorf("%s with Redis down: %d\n%.500s", path, code, body)
		}
	}
}

// TestDashboardShowsJoinsAndRelay: the overview shows the parents waiting
// on their children and the relay backlog as Stats counts them, and its
// live refresh follows them as a tick drives the relay and the last
// child's finish ends the join.
func TestDashboardShowsJoinsAndRelay(t *testing.T) {
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
	joinSpace(e)
	ui := startUI(t, e)

	browse(t, bctx, "overview", chromedp.Navigate(ui.base+"/"), chromedp.WaitVisible(chromedp.ID("overview")))
	shows := func(want map[string]string) map[string]string {
		got := map[string]string{}
		for stat := range want {
			got[stat] = textOf(t, bctx, `[data-stat="`+stat+`"]`)
		}
		return got
	}
	want := map[string]string{"joining": "1", "relay": "1", "relay_due": "1"}
	if got := shows(want); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("overview shows %v, want %v", got, want)
	}
	shot(t, bctx, "ui-overview-joins.png")

	e.run("tick").wantCode(t, 0)
	b, l, err := e.m.Claim(ctx, "test/kids", "w", time.Minute, taskflow.WithClaimWait(0))
	if err != nil || b == nil {
		t.Fatalf("claim %v %v", b, err)
	}
	if _, err := e.m.Finish(ctx, b.ID, nil, taskflow.WithLease(l)); err != nil {
		t.Fatal(err)
	}
	st, err := e.m.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Joining != 0 || st.Relay != 0 || st.RelayDue != 0 {
		t.Fatalf("Stats: joining %d relay %d due %d, want 0 0 0", st.Joining, st.Relay, st.RelayDue)
	}
	// No reload: the page refreshes itself every 2 s.
	want = map[string]string{"joining": "0", "relay": "0", "relay_due": "0"}
	deadline := time.Now().Add(15 * time.Second)
	for got := shows(want); fmt.Sprint(got) != fmt.Sprint(want); got = shows(want) {
		if time.Now().After(deadline) {
			t.Fatalf("overview still shows %v, want %v", got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDashboardShowsStaleReady: the overview shows, in all and per
// controller, the ready flows that have waited for a worker over a
// minute, and its live refresh follows a claim.
func TestDashboardShowsStaleReady(t *testing.T) {
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
	// Two flows put on test/old's queue two minutes ago (a clock that far
	// back), one on test/cli's just now.
	past := e.manager(func() time.Time { return time.Now().Add(-2 * time.Minute) })
	for range 2 {
		if _, err := past.CreateMirrored(ctx, taskflow.CreateManagedInput{ControllerID: "test/old", Goal: "g", OwnerSessionKey: ownerA}); err != nil {
			t.Fatal(err)
		}
	}
	e.running(ownerA, "fresh")
	ui := startUI(t, e)

	browse(t, bctx, "overview", chromedp.Navigate(ui.base+"/"), chromedp.WaitVisible(chromedp.ID("overview")))
	shows := func(want map[string]string) map[string]string {
		got := map[string]string{}
		for stat := range want {
			got[stat] = textOf(t, bctx, `[data-stat="`+stat+`"]`)
		}
		return got
	}
	want := map[string]string{"ready_stale": "2", "ready_stale.test/old": "2", "ready_stale.test/cli": "0", "ready.test/old": "2"}
	if got := shows(want); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("overview shows %v, want %v", got, want)
	}
	if head := textOf(t, bctx, "#ready thead"); !strings.Contains(head, "over 1m0s") {
		t.Errorf("ready queues' header %q does not say the threshold", head)
	}
	shot(t, bctx, "ui-overview-stale.png")

	if f, _, err := e.m.Claim(ctx, "test/old", "w", time.Minute, taskflow.WithClaimWait(0)); err != nil || f == nil {
		t.Fatalf("claim %v %v", f, err)
	}
	// No reload: the page refreshes itself every 2 s.
	want = map[string]string{"ready_stale": "1", "ready_stale.test/old": "1", "ready_stale.test/cli": "0", "ready.test/old": "1"}
	deadline := time.Now().Add(15 * time.Second)
	for got := shows(want); fmt.Sprint(got) != fmt.Sprint(want); got = shows(want) {
		if time.Now().After(deadline) {
			t.Fatalf("overview still shows %v, want %v", got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
