package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/internal/testbackend"
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

// realRedis returns the real Redis's URL, or the error that kept it from
// answering.
func realRedis() (string, error) {
	if _, err := testbackend.RealOptions(); err != nil {
		return "", err
	}
	return testbackend.RedisURL(), nil
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
	testbackend.Each(t, func(t *testing.T, b testbackend.Backend) {
		f(t, newTestEnv(t, b.URL))
	})
}

func newTestEnv(t *testing.T, url string) *testEnv {
	t.Helper()
	e := &testEnv{t: t, url: url, prefix: testbackend.Prefix("tfcli-test"), client: openClient(t, url)}
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
	keys, err := testbackend.Keys(context.Background(), e.client, pattern)
	if err != nil {
		e.t.Errorf("scanning %s: %v", pattern, err)
	}
	return keys
}

// deleteKeys removes the test's keys (never a flush: the server is
// shared), one DEL per key so that it works across cluster slots.
func (e *testEnv) deleteKeys() {
	if err := testbackend.DeleteKeys(context.Background(), e.client, e.prefix); err != nil {
		e.t.Errorf("deleting the test's keys: %v", err)
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
