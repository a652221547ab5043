package main

import (
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

// wantJSONError checks stderr is one JSON error object (what --json
// prints) whose message contains want.
func (r result) wantJSONError(t *testing.T, want string) {
	t.Helper()
	var e cliError
	if err := json.Unmarshal([]byte(r.stderr), &e); err != nil || e.ExitStatus != r.code || !strings.Contains(e.Error, want) {
		t.Fatalf("stderr %q, want a JSON error containing %q", r.stderr, want)
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
