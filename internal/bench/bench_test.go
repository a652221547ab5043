package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/internal/testbackend"
)

// requireRedis returns a client on the real Redis, or skips the test when
// it does not answer (fails instead with TASKFLOW_TEST_REQUIRE_REDIS=1).
func requireRedis(tb testing.TB) *redis.Client {
	tb.Helper()
	opt, err := redis.ParseURL(testbackend.RedisURL())
	if err != nil {
		tb.Fatal(err)
	}
	opt.PoolSize = clientPoolSize
	c := redis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		if testbackend.RequireRedis() {
			tb.Fatalf("real Redis required (TASKFLOW_TEST_REQUIRE_REDIS=1) but unreachable at %s: %v", testbackend.RedisURL(), err)
		}
		tb.Skipf("real Redis unreachable at %s: %v", testbackend.RedisURL(), err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRunQuick(t *testing.T) {
	c := requireRedis(t)
	suites := []string{SuiteFloor, SuiteRoundtrips}
	headers := []string{
		"=== floor", "floor ops/s", "fraction of floor",
		"=== roundtrips", "call  ", "round trips", "UpdateState",
	}
	if _, err := exec.LookPath("redis-server"); err == nil {
		suites = append(suites, SuiteStateSize, SuiteTick, SuiteWatchBaseline, SuiteList, SuiteFleet)
		headers = append(headers, "=== state-size", "wall us/op", "ratio of medians, 1 MiB / 1 KiB",
			"=== tick", "tick us (median)", "bytes/waiting flow",
			"=== watch-baseline", "scenario/impl", "successful ops/s", "contended/baseline",
			"client CPU us/op",
			"=== list", "us/call (median)", "ListByStatusPage(waiting) at 20,000 / at 1,000", "ListByOwnerPage(owner) at 20,000", "ListByOwnerPage(owner), limit 10 at 20,000",
			"ListRecent(nil) at 20,000", "stayed waiting, skipped",
			"Find(controller) at 20,000", "Find(attribute customer) at 20,000", "Find(controller, status waiting) at 20,000",
			"=== fleet", "flows/s (median)", "scripts/flow", "exactly once:", "Idle fleet:", "one flow made ready")
	} else {
		t.Log("no redis-server binary: skipping the private-server suites")
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := Run(ctx, Config{RedisURL: testbackend.RedisURL(), Suites: suites, Rounds: 2, Quick: true}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range append([]string{"GOMAXPROCS", "date:", "settings:"}, headers...) {
		if !strings.Contains(out.String(), h) {
			t.Errorf("output lacks %q", h)
		}
	}
	// A mutation is one script call: FCALL, or EVALSHA on a server
	// without Redis Functions.
	if slices.Contains(suites, SuiteRoundtrips) && !strings.Contains(out.String(), "FCALL x1") && !strings.Contains(out.String(), "EVALSHA x1") {
		t.Error("output lacks FCALL x1 or EVALSHA x1")
	}
	// Ours never fails under contention, whatever the machine.
	if slices.Contains(suites, SuiteWatchBaseline) {
		if !regexp.MustCompile(`ours: failed calls, all cells and rounds +0 +0 +ok`).MatchString(out.String()) ||
			!regexp.MustCompile(`ours: contended revision gain = successes +(\d+) = (\d+) +equal +ok`).MatchString(out.String()) {
			t.Error("watch-baseline did not report ours as failure-free with revision = 1 + successes")
		}
	}
	// Paging never repeats or skips a flow, and an idle fleet is silent.
	if slices.Contains(suites, SuiteList) {
		for _, space := range []string{"direct fill", "created with the Manager"} {
			if !regexp.MustCompile(`(?m)^` + space + `.* 0 +0 +0 +0 +ok$`).MatchString(out.String()) {
				t.Errorf("list: the paging walk on the %q space did not report ok", space)
			}
		}
	}
	if slices.Contains(suites, SuiteFleet) &&
		!regexp.MustCompile(`commands sent by the 16 workers' clients in 2s \(go-redis hooks\) +0 +0 +ok`).MatchString(out.String()) {
		t.Error("fleet: the idle fleet sent commands")
	}
	assertNoKeys(t, c, out.String())
}

func TestUnknownSuite(t *testing.T) {
	err := Run(context.Background(), Config{Suites: []string{"nope"}}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "unknown suite") {
		t.Fatalf("err = %v, want unknown suite", err)
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	table(&b, []string{"name", "value"}, [][]string{{"a", "1"}, {"longer name", "12,345"}})
	want := "name          value\n-----------  ------\na                 1\nlonger name  12,345\n"
	if b.String() != want {
		t.Fatalf("table:\n%s\nwant:\n%s", b.String(), want)
	}
	if got := f(1234567.891, 1); got != "1,234,567.9" {
		t.Fatalf("f = %q", got)
	}
	if got := median([]float64{3, 1, 2, 10}); got != 2.5 {
		t.Fatalf("median = %v", got)
	}
}

// assertNoKeys checks that the run named in out's header left no key on
// the shared Redis.
func assertNoKeys(t *testing.T, c *redis.Client, out string) {
	t.Helper()
	m := regexp.MustCompile(`run-id=([0-9a-f]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("header lacks run-id")
	}
	var left []string
	iter := c.Scan(context.Background(), 0, "tfbench-"+m[1]+"-*", 1000).Iterator()
	for iter.Next(context.Background()) {
		left = append(left, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("the run left %d keys, e.g. %q", len(left), left[0])
	}
}

// TestWriteResults runs the full harness and writes its output to the
// file named by TASKFLOW_BENCH_RESULTS (skipped when unset), with the
// command that produced it on top. TASKFLOW_BENCH_SUITES (comma list) and
// TASKFLOW_BENCH_ROUNDS narrow it.
func TestWriteResults(t *testing.T) {
	path := os.Getenv("TASKFLOW_BENCH_RESULTS")
	if path == "" {
		t.Skip("set TASKFLOW_BENCH_RESULTS=<file> to run the full harness")
	}
	cfg := Config{RedisURL: testbackend.RedisURL()}
	if s := os.Getenv("TASKFLOW_BENCH_SUITES"); s != "" {
		cfg.Suites = strings.Split(s, ",")
	}
	if s := os.Getenv("TASKFLOW_BENCH_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Rounds = n
	}
	cfg.Quick = os.Getenv("TASKFLOW_BENCH_QUICK") == "1"
	var out bytes.Buffer
	if cmd := os.Getenv("TASKFLOW_BENCH_COMMAND"); cmd != "" {
		fmt.Fprintf(&out, "command: %s\n", cmd)
	} else {
		fmt.Fprintf(&out, "command: TASKFLOW_BENCH_RESULTS=%s go test ./internal/bench -run TestWriteResults -count=1 -timeout 30m -v\n", path)
	}
	if rev := os.Getenv("TASKFLOW_BENCH_REVISION"); rev != "" {
		fmt.Fprintf(&out, "library:  %s\n", rev)
	}
	fmt.Fprintln(&out)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	err := Run(ctx, cfg, &teeWriter{&out})
	if werr := os.WriteFile(path, out.Bytes(), 0o644); werr != nil {
		t.Fatal(werr)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// teeWriter also copies each write to stdout, so a long run shows progress.
type teeWriter struct {
	b *bytes.Buffer
}

func (w *teeWriter) Write(p []byte) (int, error) {
	_, _ = os.Stdout.Write(p)
	return w.b.Write(p)
}

// benchUpdateState is the body of the UpdateState benchmarks: a 1-key
// patch on a flow whose state is ~1 KiB or ~1 MiB, on the real Redis.
func benchUpdateState(b *testing.B, big bool) {
	c := requireRedis(b)
	ctx := context.Background()
	prefix := "tfbench-go-" + randHex(4)
	b.Cleanup(func() { _, _ = deletePrefix(context.Background(), c, prefix) })
	st, err := taskflow.NewRedisStore(c, taskflow.WithPrefix(prefix))
	if err != nil {
		b.Fatal(err)
	}
	if err := st.LoadScripts(ctx); err != nil {
		b.Fatal(err)
	}
	m := taskflow.NewManager(st)
	sz := sizesFor(false)
	small, bigID, bigBytes, smallBytes, err := makeStateFlows(ctx, m, sz.bigStateKeys, sz.bigStateValue)
	if err != nil {
		b.Fatal(err)
	}
	id, bytes := small, smallBytes
	if big {
		id, bytes = bigID, bigBytes
	}
	b.ReportMetric(float64(bytes), "state-bytes")
	for i := 0; b.Loop(); i++ {
		if _, err := m.UpdateState(ctx, id, json.RawMessage(`{"counter":`+strconv.Itoa(i)+`}`), ""); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUpdateState1KiB(b *testing.B) { benchUpdateState(b, false) }
func BenchmarkUpdateState1MiB(b *testing.B) { benchUpdateState(b, true) }
