package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
)

// The tests build the binary once and run it against every backend: a
// miniredis started in the test process, the real Redis at
// TASKFLOW_TEST_REDIS_URL (default redis://127.0.0.1:6379/0) when it
// answers (TASKFLOW_TEST_REQUIRE_REDIS=1 makes an unreachable one fail),
// and a Redis Cluster when TASKFLOW_TEST_CLUSTER_ADDRS lists its nodes
// (comma-separated host:port; .ci/cluster.sh starts one), reached through
// the CLI's cluster URL form. Each test uses its own key prefix and
// deletes its keys afterwards.

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "taskflow-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "taskflow")
	build := exec.Command("go", "build", "-o", binPath, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the CLI:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

// cliEnv is the environment without the CLI's own variables, so a
// developer's settings do not leak into the tests.
func cliEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TASKFLOW_") {
			env = append(env, kv)
		}
	}
	return env
}

// runCLI runs the binary with args and returns its exit status and output.
func runCLI(t *testing.T, args ...string) result {
	t.Helper()
	return runCLIEnv(t, cliEnv(), args...)
}

// runCLIEnv runs the built binary with exactly env.
func runCLIEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	res := result{stdout: out.String(), stderr: errOut.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running taskflow %v: %v", args, err)
	}
	return res
}

// wantCode fails unless the run exited with code.
func (r result) wantCode(t *testing.T, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	return r
}

// wantOneLineError checks stderr is one "taskflow: " line containing want.
func (r result) wantOneLineError(t *testing.T, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "taskflow: ") || !strings.Contains(lines[0], want) {
		t.Fatalf("stderr %q, want one line starting with \"taskflow: \" containing %q", r.stderr, want)
	}
}

// backend is a Redis the tests run against.
type backend struct {
	name string
	url  string
}

var (
	realOnce sync.Once
	realURL  string
	realErr  error
)

func realRedis() (string, error) {
	realOnce.Do(func() {
		url := os.Getenv("TASKFLOW_TEST_REDIS_URL")
		if url == "" {
			url = "redis://127.0.0.1:6379/0"
		}
		opts, err := redis.ParseURL(url)
		if err != nil {
			realErr = err
			return
		}
		c := redis.NewClient(opts)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if realErr = c.Ping(ctx).Err(); realErr == nil {
			realURL = url
		}
	})
	return realURL, realErr
}

func backends(t *testing.T) []backend {
	t.Helper()
	mr := miniredis.RunT(t)
	out := []backend{{name: "miniredis", url: "redis://" + mr.Addr() + "/0"}}
	url, err := realRedis()
	switch {
	case err == nil:
		out = append(out, backend{name: "redis", url: url})
	case os.Getenv("TASKFLOW_TEST_REQUIRE_REDIS") == "1":
		t.Fatalf("real Redis required but unreachable: %v", err)
	default:
		t.Logf("real Redis unreachable, testing on miniredis only: %v", err)
	}
	if u := clusterURL(); u != "" {
		out = append(out, backend{name: "cluster", url: u})
	}
	return out
}

// clusterURL builds the cluster URL from TASKFLOW_TEST_CLUSTER_ADDRS: the
// first node in the host part, the others as addr= parameters ("" when
// the variable is unset).
func clusterURL() string {
	var addrs []string
	for _, a := range strings.Split(os.Getenv("TASKFLOW_TEST_CLUSTER_ADDRS"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return ""
	}
	q := url.Values{"addr": addrs[1:]}
	if len(addrs) == 1 {
		// One node still needs an addr= to be a cluster URL.
		q["addr"] = addrs
	}
	return "redis://" + addrs[0] + "?" + q.Encode()
}

// testEnv is one test on one backend: a fresh prefix, a manager on it for
// seeding, and the flags that point the CLI at it.
type testEnv struct {
	t      *testing.T
	url    string
	prefix string
	client redis.UniversalClient
	m      *taskflow.Manager
}

// eachBackend runs f on every backend with a fresh prefix.
func eachBackend(t *testing.T, f func(t *testing.T, e *testEnv)) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			f(t, newTestEnv(t, b.url))
		})
	}
}

func newTestEnv(t *testing.T, url string) *testEnv {
	t.Helper()
	e := &testEnv{t: t, url: url, prefix: "tfcli-test-" + uuid.NewString()[:8], client: openClient(t, url)}
	t.Cleanup(func() {
		e.deleteKeys()
		_ = e.client.Close()
	})
	e.m = e.manager(time.Now)
	return e
}

// manager returns a manager on the test's flow space with a clock.
func (e *testEnv) manager(now func() time.Time) *taskflow.Manager {
	e.t.Helper()
	s, err := taskflow.NewRedisStore(e.client, taskflow.WithPrefix(e.prefix), taskflow.WithClock(now))
	if err != nil {
		e.t.Fatal(err)
	}
	return taskflow.NewManager(s)
}

// openClient opens a client on a backend URL: a cluster client for the
// cluster URL form, as the CLI does.
func openClient(t *testing.T, rawURL string) redis.UniversalClient {
	t.Helper()
	if isClusterURL(rawURL) {
		opts, err := redis.ParseClusterURL(rawURL)
		if err != nil {
			t.Fatal(err)
		}
		return redis.NewClusterClient(opts)
	}
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return redis.NewClient(opts)
}

// scanKeys returns the keys matching pattern; on a cluster it scans every
// master.
func (e *testEnv) scanKeys(pattern string) []string {
	e.t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	var keys []string
	scan := func(ctx context.Context, node redis.Cmdable) error {
		iter := node.Scan(ctx, 0, pattern, 500).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			keys = append(keys, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	if cc, ok := e.client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return scan(ctx, node) })
	} else {
		err = scan(ctx, e.client)
	}
	if err != nil {
		e.t.Errorf("scanning %s: %v", pattern, err)
	}
	return keys
}

// deleteKeys removes the test's keys (never a flush: the server is
// shared), one DEL per key so that it works across cluster slots.
func (e *testEnv) deleteKeys() {
	ctx := context.Background()
	for _, k := range e.scanKeys(e.prefix + ":*") {
		if err := e.client.Del(ctx, k).Err(); err != nil {
			e.t.Errorf("deleting %s: %v", k, err)
		}
	}
}

// run runs the CLI on the test's flow space.
func (e *testEnv) run(args ...string) result {
	e.t.Helper()
	return runCLI(e.t, append(args, "--redis", e.url, "--prefix", e.prefix)...)
}

// runJSON runs the CLI with --json, wants exit status 0 and decodes stdout.
func (e *testEnv) runJSON(v any, args ...string) {
	e.t.Helper()
	r := e.run(append(args, "--json")...).wantCode(e.t, 0)
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		e.t.Fatalf("stdout is not the JSON expected: %v\n%s", err, r.stdout)
	}
}

func (e *testEnv) create(owner, goal string) *taskflow.Flow {
	e.t.Helper()
	f, err := e.m.CreateManaged(context.Background(), taskflow.CreateManagedInput{
		ControllerID: "test/cli", Goal: goal, OwnerSessionKey: owner, CurrentStep: "init",
		State: map[string]any{"n": 1, "nested": map[string]any{"ok": true}},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

func (e *testEnv) running(owner, goal string) *taskflow.Flow {
	e.t.Helper()
	f := e.create(owner, goal)
	f, err := e.m.StartRunning(context.Background(), f.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

func (e *testEnv) waiting(owner string, w taskflow.WaitCondition) *taskflow.Flow {
	e.t.Helper()
	f := e.running(owner, "wait for "+string(w.Kind))
	f, err := e.m.SetWaiting(context.Background(), f.ID, w)
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

func (e *testEnv) get(id uuid.UUID) *taskflow.Flow {
	e.t.Helper()
	f, err := e.m.Get(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

const ownerA, ownerB = "agent:a:session:1", "agent:b:session:2"

func TestUsage(t *testing.T) {
	r := runCLI(t).wantCode(t, 2)
	if !strings.Contains(r.stderr, "usage: taskflow <verb>") {
		t.Fatalf("no usage on stderr: %q", r.stderr)
	}
	r = runCLI(t, "frobnicate").wantCode(t, 2)
	if !strings.Contains(r.stderr, `unknown verb "frobnicate"`) {
		t.Fatalf("stderr %q", r.stderr)
	}
	r = runCLI(t, "--help").wantCode(t, 0)
	if !strings.Contains(r.stdout, "usage: taskflow <verb>") {
		t.Fatalf("stdout %q", r.stdout)
	}
}

func TestHelpOnEveryVerb(t *testing.T) {
	for _, v := range verbs() {
		for _, flag := range []string{"--help", "-h"} {
			r := runCLI(t, v.name, flag).wantCode(t, 0)
			if !strings.Contains(r.stdout, "usage: taskflow "+v.name) || !strings.Contains(r.stdout, "-redis") {
				t.Fatalf("%s %s: stdout %q", v.name, flag, r.stdout)
			}
		}
	}
}

func TestBadUsage(t *testing.T) {
	id := uuid.NewString()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"list", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"list", "--limit", "x"}, "invalid value"},
		{[]string{"list", "--limit", "0"}, "--limit 0"},
		{[]string{"list", "--status", "sleeping"}, `unknown status "sleeping"`},
		{[]string{"list", "extra"}, `unexpected argument "extra"`},
		{[]string{"show"}, "missing <id>"},
		{[]string{"show", id, id}, "unexpected argument"},
		{[]string{"show", "xyz"}, `"xyz" is not a flow id (want a UUID)`},
		{[]string{"events", "xyz"}, `"xyz" is not a flow id (want a UUID)`},
		{[]string{"cancel", "xyz"}, `"xyz" is not a flow id (want a UUID)`},
		{[]string{"resume", "not-a-uuid"}, `"not-a-uuid" is not a flow id (want a UUID)`},
		{[]string{"resume"}, "missing <id>"},
		{[]string{"prune"}, "--older-than is required"},
		{[]string{"prune", "--older-than", "7 days"}, "want a duration"},
		{[]string{"run", "--interval", "0s"}, "not positive"},
		{[]string{"tick", "now"}, "unexpected argument"},
		{[]string{"demo", "--flows", "0"}, "--flows 0"},
		{[]string{"list", "--shards", "0"}, "--shards 0"},
		{[]string{"list", "--prefix", "a{b}"}, "brace"},
		{[]string{"list", "--redis", "http://localhost"}, "is not a Redis URL"},
		{[]string{"list", "--redis", "redis://127.0.0.1:7101?addr=bogus"}, "unable to parse addr param: bogus"},
		{[]string{"list", "--redis", "redis://127.0.0.1:7101/3?addr=127.0.0.1:7102"}, "a Redis Cluster has only database 0"},
		{[]string{"fsck", "extra"}, `unexpected argument "extra"`},
		{[]string{"watch", "xyz"}, `"xyz" is not a flow id (want a UUID)`},
		{[]string{"watch", id, id}, "unexpected argument"},
		{[]string{"watch", "--count", "-1"}, "--count -1"},
		{[]string{"watch", "--for", "-1s"}, "--for -1s"},
	}
	for _, c := range cases {
		r := runCLI(t, c.args...)
		if r.code != 2 {
			t.Errorf("%v: exit status %d, want 2 (stderr %q)", c.args, r.code, r.stderr)
			continue
		}
		r.wantOneLineError(t, c.want)
	}
}

func TestUnreachableRedis(t *testing.T) {
	for _, args := range [][]string{
		{"list"}, {"show", uuid.NewString()}, {"tick"}, {"prune", "--older-than", "7d"}, {"watch"},
	} {
		r := runCLI(t, append(args, "--redis", "redis://127.0.0.1:1")...).wantCode(t, 1)
		r.wantOneLineError(t, "cannot reach Redis at 127.0.0.1:1")
	}
	r := runCLI(t, "fsck", "--redis", "redis://127.0.0.1:1?addr=127.0.0.1:2").wantCode(t, 1)
	r.wantOneLineError(t, "cannot reach Redis Cluster at 127.0.0.1:1,127.0.0.1:2")
}

func TestParseRetention(t *testing.T) {
	good := map[string]time.Duration{
		"7d": 7 * 24 * time.Hour, "36h": 36 * time.Hour, "90m": 90 * time.Minute,
		"1d12h": 36 * time.Hour, "0.5d": 12 * time.Hour, "0": 0, "0d": 0,
	}
	for in, want := range good {
		got, err := parseRetention(in)
		if err != nil || got != want {
			t.Errorf("parseRetention(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "7", "-1d", "-5h", "7x", "1d-1h", "NaNd", "xd"} {
		if _, err := parseRetention(in); err == nil {
			t.Errorf("parseRetention(%q) succeeded", in)
		}
	}
}

func TestList(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		// Apart by a few milliseconds: the lists order by millisecond.
		created := e.create(ownerA, "a created flow")
		time.Sleep(3 * time.Millisecond)
		running := e.running(ownerA, "a running flow with a goal that is much longer than fifty runes, ünïcödé")
		time.Sleep(3 * time.Millisecond)
		waiting := e.waiting(ownerB, taskflow.WaitManual())

		r := e.run("list").wantCode(t, 0)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") ||
			!strings.Contains(lines[0], "STATUS") || !strings.Contains(lines[0], "GOAL") {
			t.Fatalf("table:\n%s", r.stdout)
		}
		for _, f := range []*taskflow.Flow{created, running, waiting} {
			if !strings.Contains(r.stdout, f.ID.String()) {
				t.Fatalf("flow %s missing from:\n%s", f.ID, r.stdout)
			}
		}
		if !strings.Contains(r.stdout, "…") || strings.Contains(r.stdout, "ünïcödé") {
			t.Fatalf("long goal not truncated:\n%s", r.stdout)
		}

		var page struct {
			Flows []map[string]any `json:"flows"`
			Next  *string          `json:"next"`
		}
		e.runJSON(&page, "list")
		if len(page.Flows) != 3 || page.Next == nil || *page.Next != "" {
			t.Fatalf("json page: %+v", page)
		}
		for _, k := range []string{"id", "controller_id", "goal", "owner_session_key", "requester_origin",
			"current_step", "state_json", "status", "cancel_requested", "revision", "created_at", "updated_at"} {
			if _, ok := page.Flows[0][k]; !ok {
				t.Fatalf("flow JSON lacks %q: %v", k, page.Flows[0])
			}
		}
		if page.Flows[0]["id"] != waiting.ID.String() || page.Flows[0]["status"] != "waiting" {
			t.Fatalf("newest first: want the waiting flow first, got %v", page.Flows[0])
		}
		if w, ok := page.Flows[0]["wait_json"].(map[string]any); !ok || w["kind"] != "manual" {
			t.Fatalf("wait_json: %v", page.Flows[0]["wait_json"])
		}

		wantIDs(t, e, []string{"list", "--status", "waiting"}, waiting)
		wantIDs(t, e, []string{"list", "--status", "created,running"}, running, created)
		wantIDs(t, e, []string{"list", "--status", "created", "--status", "waiting"}, waiting, created)
		wantIDs(t, e, []string{"list", "--owner", ownerA}, running, created)
		wantIDs(t, e, []string{"list", "--owner", ownerA, "--status", "running"}, running)
		wantIDs(t, e, []string{"list", "--owner", ownerB, "--status", "running"})
		wantIDs(t, e, []string{"list", "--status", "finished"})
	})
}

func TestListPages(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		var ids []string
		for i := 0; i < 5; i++ {
			ids = append(ids, e.create(ownerA, fmt.Sprintf("flow %d", i)).ID.String())
			time.Sleep(2 * time.Millisecond)
		}
		r := e.run("list", "--limit", "2").wantCode(t, 0)
		if !strings.Contains(r.stdout, "next: --cursor ") {
			t.Fatalf("no next line:\n%s", r.stdout)
		}
		seen := map[string]bool{}
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 5 {
				t.Fatal("too many pages")
			}
			var page listPage
			args := []string{"list", "--limit", "2"}
			if cursor != "" {
				args = append(args, "--cursor", cursor)
			}
			e.runJSON(&page, args...)
			for _, f := range page.Flows {
				if seen[f.ID.String()] {
					t.Fatalf("flow %s on two pages", f.ID)
				}
				seen[f.ID.String()] = true
			}
			if cursor = page.Next; cursor == "" {
				break
			}
		}
		if len(seen) != len(ids) {
			t.Fatalf("paged through %d flows, want %d", len(seen), len(ids))
		}
		e.run("list", "--cursor", "nonsense").wantCode(t, 2).wantOneLineError(t, "not a list cursor")
	})
}

// wantIDs runs a list with --json and wants exactly the flows, in order.
func wantIDs(t *testing.T, e *testEnv, args []string, want ...*taskflow.Flow) {
	t.Helper()
	var page listPage
	e.runJSON(&page, args...)
	var got, exp []string
	for _, f := range page.Flows {
		got = append(got, f.ID.String())
	}
	for _, f := range want {
		exp = append(exp, f.ID.String())
	}
	if strings.Join(got, ",") != strings.Join(exp, ",") {
		t.Fatalf("%v: got %v, want %v", args, got, exp)
	}
}

func TestShow(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		f := e.running(ownerA, "show me")
		if _, err := e.m.UpdateState(ctx, f.ID, json.RawMessage(`{"big":12345678901234567890,"list":[]}`), "step-2"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.RecordStepObservation(ctx, taskflow.StepObservation{
			FlowID: f.ID, RunID: "run-7", Task: "fetch the mail", Status: taskflow.StepSucceeded,
		}); err != nil {
			t.Fatal(err)
		}

		r := e.run("show", f.ID.String()).wantCode(t, 0)
		for _, want := range []string{
			"id:", f.ID.String(), "status:", "running", "goal:", "show me", "revision:", "current_step:", "step-2",
			"state:", `"big": 12345678901234567890`, `"list": []`, "    \"ok\": true",
			"RUN_ID", "run-7", "fetch the mail", "succeeded",
			"KIND", "step_observed", "state_updated", "started", "created",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("show lacks %q:\n%s", want, r.stdout)
			}
		}

		var d struct {
			Flow   map[string]any   `json:"flow"`
			Steps  []map[string]any `json:"steps"`
			Events []map[string]any `json:"events"`
		}
		e.runJSON(&d, "show", f.ID.String())
		if d.Flow["id"] != f.ID.String() || d.Flow["current_step"] != "step-2" || d.Flow["revision"] != float64(2) {
			t.Fatalf("flow: %v", d.Flow)
		}
		if len(d.Steps) != 1 || d.Steps[0]["run_id"] != "run-7" {
			t.Fatalf("steps: %v", d.Steps)
		}
		if len(d.Events) != 4 || d.Events[0]["kind"] != "step_observed" || d.Events[3]["kind"] != "created" {
			t.Fatalf("events: %v", d.Events)
		}

		missing := uuid.NewString()
		e.run("show", missing).wantCode(t, 1).wantOneLineError(t, "flow "+missing+" not found")
		e.run("show", "xyz").wantCode(t, 2).wantOneLineError(t, `"xyz" is not a flow id (want a UUID)`)
	})
}

func TestShowLimitsEvents(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		f := e.running(ownerA, "many events")
		for i := 0; i < 25; i++ {
			if _, err := e.m.UpdateState(context.Background(), f.ID, map[string]any{"i": i}, ""); err != nil {
				t.Fatal(err)
			}
		}
		var d flowDetail
		e.runJSON(&d, "show", f.ID.String())
		if len(d.Events) != showEvents || d.Events[0].Revision != 26 {
			t.Fatalf("%d events, newest revision %d", len(d.Events), d.Events[0].Revision)
		}
	})
}

func TestEvents(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		f := e.waiting(ownerA, taskflow.WaitManual())
		r := e.run("events", f.ID.String()).wantCode(t, 0)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], "waiting") {
			t.Fatalf("events table:\n%s", r.stdout)
		}
		var events []taskflow.FlowEvent
		e.runJSON(&events, "events", f.ID.String(), "--limit", "2")
		if len(events) != 2 || events[0].Kind != taskflow.EventWaiting || events[1].Kind != taskflow.EventStarted ||
			events[0].Revision != 2 || events[0].FlowID != f.ID {
			t.Fatalf("events: %+v", events)
		}
		missing := uuid.NewString()
		e.run("events", missing).wantCode(t, 1).wantOneLineError(t, "flow "+missing+" not found")
	})
}

func TestCancel(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		a := e.running(ownerA, "cancel me")
		r := e.run("cancel", a.ID.String()).wantCode(t, 0)
		if !strings.Contains(r.stdout, "cancelled") {
			t.Fatalf("stdout %q", r.stdout)
		}
		if got := e.get(a.ID); got.Status != taskflow.StatusCancelled {
			t.Fatalf("status %s", got.Status)
		}
		e.run("cancel", a.ID.String()).wantCode(t, 0)

		b := e.waiting(ownerA, taskflow.WaitExternalEvent("t", "c"))
		var f taskflow.Flow
		e.runJSON(&f, "cancel", b.ID.String())
		if f.ID != b.ID || f.Status != taskflow.StatusCancelled || f.Wait != nil || f.Revision != b.Revision+1 {
			t.Fatalf("cancelled flow: %+v", f)
		}

		c := e.running(ownerA, "done")
		if _, err := e.m.Finish(context.Background(), c.ID, nil); err != nil {
			t.Fatal(err)
		}
		e.run("cancel", c.ID.String()).wantCode(t, 1).wantOneLineError(t, "is already finished; nothing to cancel")
		missing := uuid.NewString()
		e.run("cancel", missing).wantCode(t, 1).wantOneLineError(t, "flow "+missing+" not found")
	})
}

func TestResume(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		w := e.waiting(ownerA, taskflow.WaitManual())
		r := e.run("resume", w.ID.String()).wantCode(t, 0)
		if !strings.Contains(r.stdout, "resumed") {
			t.Fatalf("stdout %q", r.stdout)
		}
		if got := e.get(w.ID); got.Status != taskflow.StatusRunning || got.Wait != nil {
			t.Fatalf("after resume: %+v", got)
		}
		r = e.run("resume", w.ID.String()).wantCode(t, 1)
		r.wantOneLineError(t, fmt.Sprintf("flow %s is running, not waiting; nothing to resume", w.ID))
		if r.stderr != fmt.Sprintf("taskflow: flow %s is running, not waiting; nothing to resume\n", w.ID) {
			t.Fatalf("stderr %q", r.stderr)
		}

		x := e.waiting(ownerA, taskflow.WaitTimer(time.Now().Add(time.Hour)))
		var f taskflow.Flow
		e.runJSON(&f, "resume", x.ID.String())
		if f.Status != taskflow.StatusRunning || f.Revision != x.Revision+1 {
			t.Fatalf("resumed flow: %+v", f)
		}

		c := e.waiting(ownerA, taskflow.WaitManual())
		if _, err := e.m.RequestCancel(context.Background(), c.ID); err != nil {
			t.Fatal(err)
		}
		e.run("resume", c.ID.String()).wantCode(t, 1).wantOneLineError(t, "cancel request pending")

		created := e.create(ownerA, "not started")
		e.run("resume", created.ID.String()).wantCode(t, 1).wantOneLineError(t, "is created, not waiting")
		missing := uuid.NewString()
		e.run("resume", missing).wantCode(t, 1).wantOneLineError(t, "flow "+missing+" not found")
	})
}

func TestPrune(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		old := e.manager(func() time.Time { return time.Now().Add(-8 * 24 * time.Hour) })
		var oldIDs []uuid.UUID
		for i := 0; i < 3; i++ {
			f, err := old.CreateManaged(ctx, taskflow.CreateManagedInput{ControllerID: "c", Goal: "old", OwnerSessionKey: ownerA})
			if err != nil {
				t.Fatal(err)
			}
			if i < 2 { // two old terminal flows, one old created flow
				if _, err := old.Cancel(ctx, f.ID); err != nil {
					t.Fatal(err)
				}
			}
			oldIDs = append(oldIDs, f.ID)
		}
		recent := e.running(ownerA, "recent")
		if _, err := e.m.Finish(ctx, recent.ID, nil); err != nil {
			t.Fatal(err)
		}

		r := e.run("prune", "--older-than", "7d").wantCode(t, 0)
		if strings.TrimSpace(r.stdout) != "pruned 2 flows" {
			t.Fatalf("stdout %q", r.stdout)
		}
		for i, id := range oldIDs {
			_, err := e.m.Get(ctx, id)
			if gone := err != nil; gone != (i < 2) {
				t.Fatalf("old flow %d: err %v", i, err)
			}
		}
		e.get(recent.ID)

		var out map[string]int
		e.runJSON(&out, "prune", "--older-than", "36h")
		if n, ok := out["pruned"]; !ok || n != 0 {
			t.Fatalf("json: %v", out)
		}
		e.runJSON(&out, "prune", "--older-than", "0s")
		if out["pruned"] != 1 {
			t.Fatalf("json: %v", out)
		}
	})
}

func TestTick(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		seed := func() (due, future, cancel *taskflow.Flow) {
			due = e.waiting(ownerA, taskflow.WaitTimer(time.Now().Add(-time.Second)))
			future = e.waiting(ownerA, taskflow.WaitTimer(time.Now().Add(time.Hour)))
			cancel = e.waiting(ownerA, taskflow.WaitManual())
			if _, err := e.m.RequestCancel(context.Background(), cancel.ID); err != nil {
				t.Fatal(err)
			}
			return
		}
		due, _, cancel := seed()
		r := e.run("tick").wantCode(t, 0)
		for _, want := range []string{"scanned        3", "resumed        1", "cancelled      1", "still_waiting  1", "errors         0"} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("tick report lacks %q:\n%s", want, r.stdout)
			}
		}
		if e.get(due.ID).Status != taskflow.StatusRunning || e.get(cancel.ID).Status != taskflow.StatusCancelled {
			t.Fatal("tick did not resume and cancel")
		}

		seed()
		var rep map[string]int
		e.runJSON(&rep, "tick")
		want := map[string]int{"scanned": 4, "resumed": 1, "cancelled": 1, "still_waiting": 2, "errors": 0}
		for k, v := range want {
			if got, ok := rep[k]; !ok || got != v {
				t.Fatalf("json report %v, want %v", rep, want)
			}
		}
	})
}

func TestRunStopsOnSIGINT(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		due := e.waiting(ownerA, taskflow.WaitTimer(time.Now().Add(-time.Second)))
		ext := e.waiting(ownerA, taskflow.WaitExternalEvent("webhook", "order-1"))
		if err := e.m.PublishResume(ctx, taskflow.ResumeRequest{FlowID: ext.ID, Topic: "webhook", CorrelationID: "order-1"}); err != nil {
			t.Fatal(err)
		}

		cmd := exec.Command(binPath, "run", "--interval", "100ms", "--redis", e.url, "--prefix", e.prefix)
		cmd.Env = cliEnv()
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Wait until the bridge resumed the external flow too.
		deadline := time.After(10 * time.Second)
		var last map[string]any
		for bridged := false; !bridged; {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatalf("run ended early: %s", stderr.String())
				}
				if err := json.Unmarshal([]byte(line), &last); err != nil {
					t.Fatalf("not a JSON line: %q", line)
				}
				b, _ := last["bridge"].(map[string]any)
				bridged = b["resumed"] == float64(1)
			case <-deadline:
				_ = cmd.Process.Kill()
				t.Fatalf("no bridge resume within 10s; last line %v; stderr %s", last, stderr.String())
			}
		}
		start := time.Now()
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		go func() {
			for range lines {
			}
		}()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run exited with %v after SIGINT; stderr %s", err, stderr.String())
			}
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatal("run did not stop within 5s of SIGINT")
		}
		t.Logf("run stopped %s after SIGINT", time.Since(start).Round(time.Millisecond))
		for _, id := range []uuid.UUID{due.ID, ext.ID} {
			if st := e.get(id).Status; st != taskflow.StatusRunning {
				t.Fatalf("flow %s is %s, want running", id, st)
			}
		}
	})
}

// demoChecks is how many invariants the demo checks.
const demoChecks = 7

// wantPasses checks a demo's output: every check passed.
func wantPasses(t *testing.T, r result) {
	t.Helper()
	if n := strings.Count(r.stdout, "PASS"); n != demoChecks || strings.Contains(r.stdout, "FAIL") {
		t.Fatalf("demo checks (%d PASS):\n%s\nstderr:\n%s", n, r.stdout, r.stderr)
	}
}

func TestDemoEmbedded(t *testing.T) {
	r := runCLI(t, "demo", "--flows", "40", "--workers", "3").wantCode(t, 0)
	wantPasses(t, r)
	if !strings.Contains(r.stdout, "embedded Redis") {
		t.Fatalf("stdout:\n%s", r.stdout)
	}
}

func TestDemoOnBackend(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		r := e.run("demo", "--flows", "40", "--workers", "3").wantCode(t, 0)
		wantPasses(t, r)
		if !strings.Contains(r.stdout, "taskflow list --redis") {
			t.Fatalf("no hint:\n%s", r.stdout)
		}
		var page listPage
		e.runJSON(&page, "list", "--limit", "100")
		if len(page.Flows) != 40 {
			t.Fatalf("%d flows left, want 40", len(page.Flows))
		}
		for _, f := range page.Flows {
			if !f.Status.IsTerminal() {
				t.Fatalf("flow %s is %s", f.ID, f.Status)
			}
		}

		var rep demoReport
		e.runJSON(&rep, "demo", "--flows", "20", "--workers", "2")
		if !rep.Pass || rep.Flows != 20 || len(rep.Checks) != demoChecks || rep.ResumesByKind["timer"] != 4 {
			t.Fatalf("json report: %+v", rep)
		}
		// Every flow is claimed at least once, and again after its resume,
		// handoff or stall; plans 3, 10 and 17 stall.
		claims := 0
		for _, n := range rep.ClaimsByWorker {
			claims += n
		}
		if len(rep.ClaimsByWorker) != 2 || claims != rep.Claims || rep.Claims < 20+rep.ResumesByKind["timer"] ||
			rep.Stalled != 3 || rep.LeasesExpired < 3 || rep.StaleFenced != 3 {
			t.Fatalf("json report, claims: %+v", rep)
		}
	})
}

func TestRunInProcess(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
	}{
		{nil, 2}, {[]string{"nope"}, 2}, {[]string{"help"}, 0}, {[]string{"list", "-h"}, 0},
		{[]string{"show", "xyz"}, 2}, {[]string{"list", "--redis", "redis://127.0.0.1:1"}, 1},
	} {
		var out, errOut bytes.Buffer
		if got := run(c.args, &out, &errOut); got != c.code {
			t.Errorf("run(%q) = %d, want %d (stderr %q)", c.args, got, c.code, errOut.String())
		}
	}
}
