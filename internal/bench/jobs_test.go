package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/taskflow-dev/taskflow/internal/testbackend"
)

// TestJobsTaskflowPass runs the taskflow half of one jobs pass, tiny, on
// the real Redis under its own prefix: every flow created, claimed once
// and finished, the counters read, the keys deleted.
func TestJobsTaskflowPass(t *testing.T) {
	for _, ap := range []bool{false, true} {
		name := "plain"
		if ap {
			name = "autopipelined" // --autopipeline
		}
		t.Run(name, func(t *testing.T) { testJobsTaskflowPass(t, ap) })
	}
}

func testJobsTaskflowPass(t *testing.T, autoPipeline bool) {
	c := requireRedis(t)
	opt, err := redis.ParseURL(testbackend.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	if autoPipeline {
		opt.AutoPipelineOptions = &redis.AutoPipelineOptions{}
	}
	newClient := func() *redis.Client { o := *opt; return redis.NewClient(&o) }
	prefix := "tfbench-test-jobs-" + randHex(3)
	spec := jobsSpec{items: 120, producers: 8, shape: jobsShape{workers: 2, loops: 4}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := runJobsPass(ctx, c, &tfJobs{newClient: newClient, prefix: prefix, spec: spec}, spec.items)
	if err != nil {
		t.Fatal(err)
	}
	if res.createSecs <= 0 || res.drainSecs <= 0 {
		t.Errorf("create %v s, drain %v s: want both > 0", res.createSecs, res.drainSecs)
	}
	// At least one script per create and per finish (a finish hands the
	// worker its next flow: most claims ride on finishes); the shared
	// Redis may see other traffic, so no upper bound.
	cmds := res.cmds()
	if got := cmds["evalsha"].calls + cmds["fcall"].calls; got < int64(2*spec.items) {
		t.Errorf("%d script calls (EVALSHA, FCALL) for %d items, want at least %d", got, spec.items, 2*spec.items)
	}
	if res.usecPerItem() <= 0 {
		t.Errorf("Redis time per item %v, want > 0", res.usecPerItem())
	}
	if _, ok := res.cmds()["info"]; ok {
		t.Error("INFO counted in the pass's commands")
	}
	keys, err := c.Keys(ctx, prefix+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) > 0 {
		t.Errorf("the pass left %d keys, e.g. %q", len(keys), keys[0])
	}
}

// TestJobsBullMQSkipsWithoutNode: without node, or with node but no npm,
// the BullMQ half is skipped with a sentence that says what is missing.
func TestJobsBullMQSkipsWithoutNode(t *testing.T) {
	ctx := context.Background()
	nodePath, nodeErr := exec.LookPath("node")
	t.Run("no node", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		p, skip, err := startBullMQ(ctx, "127.0.0.1:1")
		if err != nil || p != nil {
			t.Fatalf("startBullMQ = %v, %v; want a skip", p, err)
		}
		if !strings.Contains(skip, "BullMQ half skipped") || !strings.Contains(skip, "no `node` on PATH") {
			t.Fatalf("skip = %q", skip)
		}
	})
	t.Run("node but no npm", func(t *testing.T) {
		if nodeErr != nil {
			t.Skip("no node on PATH")
		}
		dir := t.TempDir()
		if err := os.Symlink(nodePath, filepath.Join(dir, "node")); err != nil {
			t.Skip(err)
		}
		t.Setenv("PATH", dir)
		p, skip, err := startBullMQ(ctx, "127.0.0.1:1")
		if err != nil || p != nil {
			t.Fatalf("startBullMQ = %v, %v; want a skip", p, err)
		}
		if !strings.Contains(skip, "no `npm` on PATH") {
			t.Fatalf("skip = %q", skip)
		}
	})
}

// TestJobsSuiteWithoutNode runs the whole jobs suite, quick and one
// round, on a private server with a PATH that has no node: it prints the
// skip and taskflow's column, and BullMQ's cells say skipped.
func TestJobsSuiteWithoutNode(t *testing.T) {
	server, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("no redis-server binary for a private server")
	}
	if server, err = filepath.Abs(server); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir())
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err = Run(ctx, Config{Suites: []string{SuiteJobs}, Rounds: 1, Quick: true, RedisServer: server}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"=== jobs", "BullMQ half skipped: no `node` on PATH", "create / add, 32 producers",
		"claim + finish, 1 worker x 50 loops", "claim + finish, 4 workers x 16 loops", "memory per finished item",
		"Where the Redis time goes", "FCALL"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "claim + finish, 1 worker x 50 loops") && !strings.Contains(line, "skipped") {
			t.Errorf("BullMQ's cell is not skipped: %q", line)
		}
	}
}
