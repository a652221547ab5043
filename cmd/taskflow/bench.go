package main

import (
	"context"
	"os/signal"
	"strings"
	"syscall"

	"github.com/taskflow-dev/taskflow/internal/bench"
)

// cmdBench runs the benchmark harness (internal/bench): medians over
// rounds and ratios measured in the same run, on private redis-servers it
// starts on loopback ports (and the --redis server for the floor and
// round-trip suites).
var benchVerb = &verb{
	name:    "bench",
	args:    "[--suites S] [--rounds N] [--quick] [--cluster-addrs A]",
	summary: "run the benchmarks (medians and ratios measured in one run)",
	help: `Run the benchmarks and print their tables: state size, memory per flow, tick
cost, resume rate, the EVALSHA floor, a WATCH/MULTI baseline, round trips,
pagination, fleet hand-off, flows of flows against the same work by hand
(children), claim + finish with fair-capacity limits on and off (limits)
and (with --cluster-addrs) cluster scaling. Needs
redis-server on PATH for the private servers. Suites: ` + strings.Join(bench.AllSuites(), ", ") + `.

The jobs suite runs only when named (--suites jobs): it compares taskflow
with BullMQ on one private Redis, interleaved, 20,000 items per pass (2,000
with --quick): create / add from 32 producers, claim + finish with 1 worker
x 50 loops and 4 workers x 16 loops, Redis time and CPU per item, memory
per finished item with its history, and the commands per item by name. It
installs bullmq from npm into a temp dir and runs it with node; without
node or npm, or when the install fails, it says so and measures taskflow
alone.`,
	run: cmdBench,
}

func cmdBench(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	suites := fs.String("suites", "", "comma-separated suites to run (default: all but jobs)")
	rounds := fs.Int("rounds", 5, "rounds per measurement; tables show medians")
	quick := fs.Bool("quick", false, "shrink every size 10-100x (a run of about a minute)")
	clusterAddrs := fs.String("cluster-addrs", "", "comma-separated nodes of a running Redis Cluster for the cluster suite")
	autoPipeline := fs.Bool("autopipeline", false, "jobs suite: build taskflow's clients with go-redis's AutoPipelineOptions")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos); err != nil {
		return err
	}
	if *rounds < 1 {
		return usagef("bench: --rounds must be at least 1")
	}
	cfg := bench.Config{RedisURL: c.redisURL, Rounds: *rounds, Quick: *quick, AutoPipeline: *autoPipeline}
	if *suites != "" {
		cfg.Suites = strings.Split(*suites, ",")
	}
	if *clusterAddrs != "" {
		cfg.ClusterAddrs = strings.Split(*clusterAddrs, ",")
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return bench.Run(ctx, cfg, c.stdout)
}
