package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/taskflow-dev/taskflow"
)

// floorScript returns at once: the cheapest possible EVALSHA round trip.
// It is called with Run (EVALSHA, EVAL only after a NOSCRIPT), like the
// library's scripts: other users of a shared server may flush the cache.
var floorScript = redis.NewScript("return 1")

// floor: ops/s of an EVALSHA that returns at once versus UpdateState on
// distinct flows, at several concurrencies, on the shared Redis.
func (r *runner) floor(ctx context.Context) error {
	c, err := r.sharedClient(ctx)
	if err != nil {
		return err
	}
	prefix := r.newPrefix("floor")
	defer r.cleanupShared(ctx, c, prefix)
	if err := floorScript.Load(ctx, c).Err(); err != nil {
		return err
	}
	maxC := 0
	for _, cc := range r.sz.floorConcurrent {
		maxC = max(maxC, cc)
	}
	m, ids, err := newUpdateFlows(ctx, c, prefix, maxC)
	if err != nil {
		return err
	}
	floorOps := map[int][]float64{}
	oursOps := map[int][]float64{}
	for round := 0; round < r.cfg.Rounds; round++ {
		for _, cc := range r.sz.floorConcurrent {
			fl, err := load(ctx, cc, r.sz.floorDuration, func(ctx context.Context, w int, seq int64) error {
				return floorScript.Run(ctx, c, nil).Err()
			})
			if err != nil {
				return err
			}
			ours, err := load(ctx, cc, r.sz.floorDuration, updateStateOp(m, ids))
			if err != nil {
				return err
			}
			floorOps[cc] = append(floorOps[cc], fl.opsPerSec())
			oursOps[cc] = append(oursOps[cc], ours.opsPerSec())
		}
	}
	fmt.Fprintf(r.out, "Closed loop for %s per cell, alternating floor and UpdateState; shared Redis %s (other clients may be\n", r.sz.floorDuration, redactURL(r.cfg.RedisURL))
	fmt.Fprintln(r.out, "using it: both columns see the same conditions). Floor = EVALSHA of `return 1`; UpdateState = a 1-key")
	fmt.Fprintln(r.out, "patch, each goroutine on its own flow (5-key state), whole flow returned.")
	var rows [][]string
	for _, cc := range r.sz.floorConcurrent {
		fm, om := median(floorOps[cc]), median(oursOps[cc])
		frac := om / fm
		target, v := "", ""
		if cc == 64 {
			target, v = ">= 0.5", verdict(frac >= 0.5)
		}
		rows = append(rows, []string{strconv.Itoa(cc), f(fm, 0), f(om, 0), f(frac, 2), target, v})
	}
	table(r.out, []string{"concurrency", "floor ops/s", "UpdateState ops/s", "fraction of floor", "target", "verdict"}, rows)
	return r.floorBreakdown(ctx)
}

// floorBreakdown repeats the floor comparison on a private server, where
// INFO commandstats and the process's CPU time split each op into server
// time and client CPU.
func (r *runner) floorBreakdown(ctx context.Context) error {
	srv, err := r.startServer(ctx)
	if errors.Is(err, errNoServer) {
		fmt.Fprintf(r.out, "\n(private-server breakdown skipped: %v)\n", err)
		return nil
	}
	if err != nil {
		return err
	}
	defer srv.kill()
	if err := floorScript.Load(ctx, srv.client).Err(); err != nil {
		return err
	}
	m, ids, err := newUpdateFlows(ctx, srv.client, r.newPrefix("floorp"), 64)
	if err != nil {
		return err
	}
	type cell struct{ ops, server, cpu []float64 }
	cells := map[string]*cell{}
	conc := []int{1, 64}
	for round := 0; round < r.cfg.Rounds; round++ {
		for _, cc := range conc {
			for _, impl := range []string{"floor", "UpdateState"} {
				op := func(ctx context.Context, w int, seq int64) error {
					return floorScript.Run(ctx, srv.client, nil).Err()
				}
				if impl == "UpdateState" {
					op = updateStateOp(m, ids)
				}
				before, err := commandStats(ctx, srv.client)
				if err != nil {
					return err
				}
				cpu0 := processCPU()
				res, err := load(ctx, cc, r.sz.floorDuration, op)
				if err != nil {
					return err
				}
				cpu := processCPU() - cpu0
				after, err := commandStats(ctx, srv.client)
				if err != nil {
					return err
				}
				d := scriptDelta(before, after)
				key := fmt.Sprintf("%d/%s", cc, impl)
				x := cells[key]
				if x == nil {
					x = &cell{}
					cells[key] = x
				}
				done := float64(res.ok + res.failed)
				x.ops = append(x.ops, res.opsPerSec())
				x.server = append(x.server, float64(d.usec)/float64(max(d.calls, 1)))
				x.cpu = append(x.cpu, float64(cpu.Microseconds())/done)
			}
		}
	}
	fmt.Fprintln(r.out)
	fmt.Fprintln(r.out, "The same on a private Redis (no other clients), split per op: server = EVALSHA or FCALL usec/call (INFO")
	fmt.Fprintln(r.out, "commandstats); client CPU = this process's user+system CPU time per op (getrusage). Redis and the")
	fmt.Fprintln(r.out, "client share the machine's cores.")
	var rows [][]string
	for _, cc := range conc {
		fl := cells[fmt.Sprintf("%d/floor", cc)]
		us := cells[fmt.Sprintf("%d/UpdateState", cc)]
		for _, x := range []struct {
			name string
			c    *cell
		}{{"floor", fl}, {"UpdateState", us}} {
			frac := ""
			if x.name == "UpdateState" {
				frac = f(median(us.ops)/median(fl.ops), 2)
			}
			rows = append(rows, []string{strconv.Itoa(cc), x.name, f(median(x.c.ops), 0), frac, f(median(x.c.server), 1), f(median(x.c.cpu), 1)})
		}
	}
	table(r.out, []string{"concurrency", "impl", "ops/s", "fraction of floor", "server us/op", "client CPU us/op"}, rows)
	return nil
}

// newUpdateFlows makes a manager on c under prefix (scripts loaded) and
// count running flows with the memory suite's 5-key state.
func newUpdateFlows(ctx context.Context, c redis.UniversalClient, prefix string, count int) (*taskflow.Manager, []uuid.UUID, error) {
	st, err := taskflow.NewRedisStore(c, taskflow.WithPrefix(prefix))
	if err != nil {
		return nil, nil, err
	}
	if err := st.LoadScripts(ctx); err != nil {
		return nil, nil, err
	}
	m := taskflow.NewManager(st)
	ids := make([]uuid.UUID, count)
	for i := range ids {
		fl, err := m.CreateMirrored(ctx, memFlowInput(i, 100, false))
		if err != nil {
			return nil, nil, err
		}
		ids[i] = fl.ID
	}
	return m, ids, nil
}

// updateStateOp is a load op: worker w patches its own flow ids[w].
func updateStateOp(m *taskflow.Manager, ids []uuid.UUID) func(ctx context.Context, w int, seq int64) error {
	return func(ctx context.Context, w int, seq int64) error {
		_, err := m.UpdateState(ctx, ids[w], json.RawMessage(`{"n":`+strconv.FormatInt(seq, 10)+`}`), "")
		if errors.Is(err, taskflow.ErrRevisionMismatch) {
			return errFailedOp
		}
		return err
	}
}

// UpdateStateThroughput measures UpdateState ops/s on client with workers
// goroutines, each on its own flow, for d; it creates the flows under
// prefix and deletes every key under prefix afterwards. It works on any
// UniversalClient: a single node, Sentinel, or a Redis Cluster (where the
// flows spread over the shards' slots).
func UpdateStateThroughput(ctx context.Context, client redis.UniversalClient, prefix string, workers int, d time.Duration) (float64, error) {
	defer func() {
		cctx, cancel := cleanupCtx(ctx)
		defer cancel()
		_, _ = deletePrefix(cctx, client, prefix)
	}()
	m, ids, err := newUpdateFlows(ctx, client, prefix, workers)
	if err != nil {
		return 0, err
	}
	res, err := load(ctx, workers, d, updateStateOp(m, ids))
	if err != nil {
		return 0, err
	}
	if res.failed > 0 {
		return 0, fmt.Errorf("%d UpdateState calls failed", res.failed)
	}
	return res.opsPerSec(), nil
}

// CompareClusterUpdateState prints UpdateState ops/s at 64 goroutines on a
// Redis Cluster versus a single node, median of rounds, each round d per
// side. It is the cluster suite's body, callable with any two clients so a
// cluster can be wired in later; it never starts a cluster.
func CompareClusterUpdateState(ctx context.Context, cluster, single redis.UniversalClient, rounds int, d time.Duration, out io.Writer) error {
	var cl, si []float64
	for round := 0; round < rounds; round++ {
		x, err := UpdateStateThroughput(ctx, cluster, "tfbench-cluster-"+randHex(4), 64, d)
		if err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		y, err := UpdateStateThroughput(ctx, single, "tfbench-single-"+randHex(4), 64, d)
		if err != nil {
			return fmt.Errorf("single node: %w", err)
		}
		cl, si = append(cl, x), append(si, y)
	}
	fmt.Fprintf(out, "UpdateState at 64 goroutines on distinct flows, %s per side, %d rounds.\n", d, rounds)
	table(out, []string{"deployment", "ops/s (median)"}, [][]string{
		{"cluster", f(median(cl), 0)},
		{"single node", f(median(si), 0)},
		{"cluster / single", f(median(cl)/median(si), 2)},
	})
	return nil
}

func (r *runner) cluster(ctx context.Context) error {
	if len(r.cfg.ClusterAddrs) == 0 {
		fmt.Fprintln(r.out, "skipped: Config.ClusterAddrs is empty (the harness never starts a cluster; see CompareClusterUpdateState)")
		return nil
	}
	single, err := r.sharedClient(ctx)
	if err != nil {
		return err
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: r.cfg.ClusterAddrs, PoolSize: clientPoolSize})
	defer cc.Close()
	if err := cc.Ping(ctx).Err(); err != nil {
		return err
	}
	return CompareClusterUpdateState(ctx, cc, single, r.cfg.Rounds, r.sz.floorDuration, r.out)
}
