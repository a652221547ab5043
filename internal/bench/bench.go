// Package bench is the performance harness of taskflow: it measures the
// library against the targets of the project's issues (state size, Redis
// memory per flow, tick cost, resume throughput, the EVALSHA floor, the
// WATCH/MULTI baseline a user would otherwise write, and round trips per
// call) and prints aligned text tables of medians over several rounds,
// with every ratio computed from figures measured in the same run.
//
// Suites that read server-wide figures (INFO memory, INFO commandstats) or
// need a quiet server run on a private redis-server started on a loopback
// port from a temporary directory and killed at the end; the others run on
// the shared Redis of Config.RedisURL under a unique key prefix, and every
// key they create is deleted.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisURL is the shared Redis used when Config.RedisURL is empty.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

// DefaultBasePort is the first loopback port tried for a private
// redis-server.
const DefaultBasePort = 6390

// clientPoolSize is the connection pool of every client the harness opens:
// above the highest concurrency (64), so the pool never throttles a run.
const clientPoolSize = 128

// Suite names, in the order Run runs them.
const (
	SuiteStateSize     = "state-size"
	SuiteMemory        = "memory"
	SuiteTick          = "tick"
	SuiteResume        = "resume"
	SuiteFloor         = "floor"
	SuiteWatchBaseline = "watch-baseline"
	SuiteRoundtrips    = "roundtrips"
	SuiteList          = "list"
	SuiteFleet         = "fleet"
	SuiteCluster       = "cluster"
	SuiteStats         = "stats"
	SuiteHooks         = "hooks"
	SuiteJobs          = "jobs"
	SuiteChildren      = "children"
	SuiteLimits        = "limits"
)

// AllSuites lists every suite name in run order.
func AllSuites() []string {
	return []string{SuiteStateSize, SuiteMemory, SuiteTick, SuiteResume, SuiteFloor,
		SuiteWatchBaseline, SuiteRoundtrips, SuiteList, SuiteFleet, SuiteCluster, SuiteStats, SuiteHooks, SuiteJobs, SuiteChildren, SuiteLimits}
}

// DefaultSuites lists the suites a run without Config.Suites runs: all
// but the jobs suite, which installs BullMQ from npm and so runs only
// when asked for.
func DefaultSuites() []string {
	return slices.DeleteFunc(AllSuites(), func(s string) bool { return s == SuiteJobs })
}

// Config selects and sizes a run.
type Config struct {
	// RedisURL is the shared Redis for the floor and roundtrips suites
	// (default DefaultRedisURL); the others run on private servers.
	RedisURL string
	// Suites to run, by name (see AllSuites); empty means DefaultSuites
	// (all but jobs).
	Suites []string
	// Rounds is how many times each measurement is repeated; tables show
	// the median (default 5).
	Rounds int
	// Quick shrinks every size 10-100x so a run takes well under a minute.
	Quick bool
	// ClusterAddrs, when set, enables the cluster suite against a running
	// Redis Cluster (the harness never starts one).
	ClusterAddrs []string
	// RedisServer is the redis-server binary for private servers (default:
	// "redis-server" from PATH).
	RedisServer string
	// BasePort is the first loopback port tried for a private server
	// (default DefaultBasePort).
	BasePort int
	// AutoPipeline builds the jobs suite's taskflow clients with go-redis's
	// AutoPipelineOptions (the defaults), so their stores send scripts
	// through the client's AutoPipeliner (taskflow.NewRedisStore).
	AutoPipeline bool
}

// sizes are the workload sizes of one run.
type sizes struct {
	stateOps        int // UpdateState calls per round and state size
	bigStateKeys    int // keys of the ~1 MiB state
	bigStateValue   int // bytes of each value (a JSON string)
	memFlows        int // running flows for bytes per flow
	memSteps        int // step observations
	memEvents       int // UpdateState patches for bytes per event
	memWaiting      int // waiting flows
	memVariant      int // flows in the variant rows
	memWorkers      int // goroutines filling
	tickSmall       int // waiting flows, small tick size
	tickLarge       int // waiting flows, large tick size
	ticksPerRound   int // ticks timed per round
	tickSchedules   int // idle schedules of the tick suite's last row
	resumeFlows     int // due timers per resume run
	floorDuration   time.Duration
	watchDuration   time.Duration
	watchWorkers    int
	floorConcurrent []int
	listSmall       int           // flows in the small list space
	listLarge       int           // flows in the large list space
	listOwners      int           // owners of the list spaces (the listed one holds 1/listOwners)
	listCalls       int           // first-page calls timed per round and listing
	listWalkLimit   int           // page size of the paging walks
	fleetFlows      int           // running flows per claim-to-completion run
	fleetWorkers    []int         // worker counts of the throughput runs
	idleWorkers     int           // workers blocked in Claim for the idle check
	idleWindow      time.Duration // how long the idle fleet is watched
	statsSmall      int           // waiting flows, small Stats space
	statsLarge      int           // waiting flows, large Stats space
	statsCalls      int           // Stats calls timed per round and size
	hookOps         int           // UpdateState calls per round and observer variant
	jobsItems       int           // items per jobs pass
	jobsProducers   int           // concurrent creates / adds
	jobsShapes      []jobsShape   // claim + finish configurations
	spawnChildren   int           // children per spawn and join pass
	fanParents      int           // parents of the fan-out
	fanKids         int           // children per fan-out parent
	limitsFlows     int           // flows per limits pass
	limitsShape     jobsShape     // the limits suite's claim + finish workers
}

func sizesFor(quick bool) sizes {
	s := sizes{
		stateOps: 400, bigStateKeys: 1024, bigStateValue: 1000,
		memFlows: 100_000, memSteps: 100_000, memEvents: 100_000, memWaiting: 100_000, memVariant: 20_000, memWorkers: 32,
		tickSmall: 1_000, tickLarge: 1_000_000, ticksPerRound: 200, tickSchedules: 100_000,
		resumeFlows:   100_000,
		floorDuration: time.Second, watchDuration: 2 * time.Second, watchWorkers: 64,
		floorConcurrent: []int{1, 8, 64},
		listSmall:       1_000, listLarge: 1_000_000, listOwners: 100, listCalls: 200, listWalkLimit: 50,
		fleetFlows: 2_000, fleetWorkers: []int{1, 4, 16}, idleWorkers: 16, idleWindow: 10 * time.Second,
		statsSmall: 1_000, statsLarge: 1_000_000, statsCalls: 200, hookOps: 2_000,
		jobsItems: 20_000, jobsProducers: 32, jobsShapes: []jobsShape{{1, 50}, {4, 16}},
		spawnChildren: 1_000, fanParents: 100, fanKids: 10,
		limitsFlows: 5_000, limitsShape: jobsShape{4, 4},
	}
	if quick {
		s.stateOps = 30
		s.memFlows, s.memSteps, s.memEvents, s.memWaiting, s.memVariant = 5_000, 5_000, 5_000, 5_000, 2_000
		s.tickLarge = 20_000
		s.ticksPerRound = 20
		s.resumeFlows = 5_000
		s.floorDuration, s.watchDuration = 150*time.Millisecond, 200*time.Millisecond
		s.listLarge, s.listCalls = 20_000, 20
		s.fleetFlows, s.idleWindow = 200, 2*time.Second
		s.statsLarge, s.statsCalls, s.hookOps = 20_000, 20, 200
		s.jobsItems = 2_000
		s.spawnChildren, s.fanParents = 200, 20
		s.limitsFlows = 1_000
	}
	return s
}

// runner carries one Run's settings and shared resources.
type runner struct {
	cfg    Config
	sz     sizes
	out    io.Writer
	shared *redis.Client // nil until a suite needs it
	runID  string
}

// Run runs the selected suites and prints their tables to out. It stops at
// the first failing suite (after cleaning up what that suite created) and
// returns its error; ctx cancels the run promptly.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	if cfg.Rounds <= 0 {
		cfg.Rounds = 5
	}
	if cfg.RedisURL == "" {
		cfg.RedisURL = DefaultRedisURL
	}
	if cfg.BasePort <= 0 {
		cfg.BasePort = DefaultBasePort
	}
	if cfg.RedisServer == "" {
		cfg.RedisServer = "redis-server"
	}
	suites := cfg.Suites
	if len(suites) == 0 {
		suites = DefaultSuites()
	}
	known := AllSuites()
	for _, s := range suites {
		if !slices.Contains(known, s) {
			return fmt.Errorf("bench: unknown suite %q (known: %s)", s, strings.Join(known, ", "))
		}
	}
	r := &runner{cfg: cfg, sz: sizesFor(cfg.Quick), out: out, runID: randHex(4)}
	defer func() {
		if r.shared != nil {
			_ = r.shared.Close()
		}
	}()
	r.header(ctx, suites)
	for _, name := range known { // run order, whatever order was asked
		if !slices.Contains(suites, name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		start := time.Now()
		fmt.Fprintf(out, "\n=== %s\n", name)
		var err error
		switch name {
		case SuiteStateSize:
			err = r.stateSize(ctx)
		case SuiteMemory:
			err = r.memory(ctx)
		case SuiteTick:
			err = r.tick(ctx)
		case SuiteResume:
			err = r.resume(ctx)
		case SuiteFloor:
			err = r.floor(ctx)
		case SuiteWatchBaseline:
			err = r.watchBaseline(ctx)
		case SuiteRoundtrips:
			err = r.roundtrips(ctx)
		case SuiteList:
			err = r.list(ctx)
		case SuiteFleet:
			err = r.fleet(ctx)
		case SuiteCluster:
			err = r.cluster(ctx)
		case SuiteStats:
			err = r.stats(ctx)
		case SuiteHooks:
			err = r.hooks(ctx)
		case SuiteJobs:
			err = r.jobs(ctx)
		case SuiteChildren:
			err = r.children(ctx)
		case SuiteLimits:
			err = r.limits(ctx)
		}
		if err != nil {
			fmt.Fprintf(out, "%s: FAILED: %v\n", name, err)
			return fmt.Errorf("bench: suite %s: %w", name, err)
		}
		fmt.Fprintf(out, "(%s took %s; load average now %s)\n", name, time.Since(start).Round(100*time.Millisecond), loadAvg())
	}
	return nil
}

func (r *runner) header(ctx context.Context, suites []string) {
	w := r.out
	fmt.Fprintln(w, "taskflow benchmark harness (internal/bench)")
	fmt.Fprintf(w, "date:        %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "go:          %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "GOMAXPROCS:  %d (NumCPU %d)\n", runtime.GOMAXPROCS(0), runtime.NumCPU())
	sharedVer := "unreachable"
	if c, err := r.sharedClient(ctx); err == nil {
		sharedVer = redisVersion(ctx, c)
	} else {
		sharedVer = "unreachable: " + err.Error()
	}
	fmt.Fprintf(w, "shared:      %s (Redis %s)\n", redactURL(r.cfg.RedisURL), sharedVer)
	privVer := "not found"
	if path, err := exec.LookPath(r.cfg.RedisServer); err == nil {
		if b, err := exec.CommandContext(ctx, path, "--version").Output(); err == nil {
			privVer = strings.TrimSpace(string(b))
		}
	}
	fmt.Fprintf(w, "private:     %s, loopback ports from %d, --save \"\" --appendonly no (%s)\n", r.cfg.RedisServer, r.cfg.BasePort, privVer)
	fmt.Fprintf(w, "settings:    suites=%s rounds=%d quick=%v run-id=%s client-pool=%d\n",
		strings.Join(suites, ","), r.cfg.Rounds, r.cfg.Quick, r.runID, clientPoolSize)
	s := r.sz
	fmt.Fprintf(w, "sizes:       state-size: %d ops/round, big state %d keys x %d B; memory: %d flows, %d steps, %d events, %d waiting, %d per variant, %d workers\n",
		s.stateOps, s.bigStateKeys, s.bigStateValue, s.memFlows, s.memSteps, s.memEvents, s.memWaiting, s.memVariant, s.memWorkers)
	fmt.Fprintf(w, "             tick: %d and %d waiting (then %d idle schedules), %d ticks/round; resume: %d due; floor: %s per cell at %v; watch: %s per cell, %d goroutines\n",
		s.tickSmall, s.tickLarge, s.tickSchedules, s.ticksPerRound, s.resumeFlows, s.floorDuration, s.floorConcurrent, s.watchDuration, s.watchWorkers)
	fmt.Fprintf(w, "             list: %d and %d flows, %d owners, %d calls/round, walk pages of %d; fleet: %d flows/run at %v workers, %d idle workers for %s\n",
		s.listSmall, s.listLarge, s.listOwners, s.listCalls, s.listWalkLimit, s.fleetFlows, s.fleetWorkers, s.idleWorkers, s.idleWindow)
	if slices.Contains(suites, SuiteJobs) {
		fmt.Fprintf(w, "             jobs: %d items per pass, %d producers, claim + finish with %v, BullMQ %s from npm\n",
			s.jobsItems, s.jobsProducers, s.jobsShapes, bullmqVersion)
	}
	if slices.Contains(suites, SuiteChildren) {
		fmt.Fprintf(w, "             children: %d children per spawn and join pass; fan-out %d parents x %d children\n",
			s.spawnChildren, s.fanParents, s.fanKids)
	}
	if slices.Contains(suites, SuiteLimits) {
		fmt.Fprintf(w, "             limits: %d flows per pass, claim + finish with %s, keys on (limits that never bind) and off\n",
			s.limitsFlows, s.limitsShape)
	}
	if len(r.cfg.ClusterAddrs) > 0 {
		fmt.Fprintf(w, "cluster:     %s\n", strings.Join(r.cfg.ClusterAddrs, ","))
	}
	fmt.Fprintf(w, "load:        %s (1/5/15-min load average at start; other processes share this machine)\n", loadAvg())
	fmt.Fprintln(w, "Figures are medians over the rounds; ratios divide medians measured in this run.")
}

// loadAvg is /proc/loadavg's first three fields, or "n/a".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	fields := strings.Fields(string(b))
	if len(fields) < 3 {
		return "n/a"
	}
	return strings.Join(fields[:3], " ")
}

func redactURL(u string) string {
	if i := strings.Index(u, "@"); i >= 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + "***" + u[i:]
		}
	}
	return u
}

// sharedClient opens (once) the client of Config.RedisURL and pings it.
func (r *runner) sharedClient(ctx context.Context) (*redis.Client, error) {
	if r.shared != nil {
		return r.shared, nil
	}
	opt, err := redis.ParseURL(r.cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	opt.PoolSize = clientPoolSize
	c := redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		_ = c.Close()
		return nil, err
	}
	r.shared = c
	return c, nil
}

// newPrefix returns a unique key prefix for one suite.
func (r *runner) newPrefix(suite string) string {
	return "tfbench-" + r.runID + "-" + suite + "-" + randHex(3)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// redisVersion reads redis_version from INFO server.
func redisVersion(ctx context.Context, c redis.UniversalClient) string {
	v := infoField(ctx, c, "server", "redis_version")
	if v == "" {
		return "?"
	}
	return v
}

// infoField returns one field of an INFO section.
func infoField(ctx context.Context, c redis.UniversalClient, section, field string) string {
	s, err := c.Info(ctx, section).Result()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, ":"); ok && k == field {
			return v
		}
	}
	return ""
}

// cmdStat is one line of INFO commandstats.
type cmdStat struct {
	calls int64
	usec  int64
}

// commandStats reads INFO commandstats as name -> (calls, usec).
func commandStats(ctx context.Context, c redis.UniversalClient) (map[string]cmdStat, error) {
	s, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	out := map[string]cmdStat{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		var st cmdStat
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "calls":
				st.calls = n
			case "usec":
				st.usec = n
			}
		}
		out[strings.TrimPrefix(name, "cmdstat_")] = st
	}
	return out, nil
}

// scriptDelta returns after-before for the commands that run a script:
// EVALSHA, and FCALL and FCALL_RO where the store calls its library of
// Redis Functions.
func scriptDelta(before, after map[string]cmdStat) cmdStat {
	var d cmdStat
	for _, name := range []string{"evalsha", "fcall", "fcall_ro"} {
		x := statDelta(before, after, name)
		d.calls += x.calls
		d.usec += x.usec
	}
	return d
}

// statDelta returns after-before for one command.
func statDelta(before, after map[string]cmdStat, name string) cmdStat {
	return cmdStat{calls: after[name].calls - before[name].calls, usec: after[name].usec - before[name].usec}
}

// deletePrefix deletes every key matching prefix:* (SCAN + UNLINK in
// batches), on every master of a cluster. It returns how many it deleted.
func deletePrefix(ctx context.Context, c redis.UniversalClient, prefix string) (int, error) {
	if prefix == "" || strings.ContainsAny(prefix, "*?[]\\") {
		return 0, fmt.Errorf("bench: refusing to delete by unsafe prefix %q", prefix)
	}
	if cc, ok := c.(*redis.ClusterClient); ok {
		var total atomic.Int64
		err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			n, err := deleteMatching(ctx, node, prefix+":*", true)
			total.Add(int64(n))
			return err
		})
		return int(total.Load()), err
	}
	return deleteMatching(ctx, c, prefix+":*", false)
}

// deleteMatching deletes the keys of one node (or a standalone server)
// that match the SCAN pattern match, in batches; perKey unlinks each key
// alone (a cluster node refuses a multi-key UNLINK across slots).
func deleteMatching(ctx context.Context, c redis.UniversalClient, match string, perKey bool) (int, error) {
	var cursor uint64
	total := 0
	for {
		keys, next, err := c.Scan(ctx, cursor, match, 2000).Result()
		if err != nil {
			return total, err
		}
		for len(keys) > 0 {
			n := min(len(keys), 500)
			batch := keys[:n]
			keys = keys[n:]
			if perKey {
				pipe := c.Pipeline()
				for _, k := range batch {
					pipe.Unlink(ctx, k)
				}
				if _, err := pipe.Exec(ctx); err != nil {
					return total, err
				}
			} else if err := c.Unlink(ctx, batch...).Err(); err != nil {
				return total, err
			}
			total += n
		}
		cursor = next
		if cursor == 0 {
			return total, nil
		}
	}
}

// cleanupCtx is a context for cleanup that survives the run's cancellation.
func cleanupCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
}

// cleanupShared deletes prefix on c, reporting a failure to out.
func (r *runner) cleanupShared(ctx context.Context, c redis.UniversalClient, prefix string) {
	cctx, cancel := cleanupCtx(ctx)
	defer cancel()
	if _, err := deletePrefix(cctx, c, prefix); err != nil {
		fmt.Fprintf(r.out, "warning: cleanup of %s:* failed: %v\n", prefix, err)
	}
}

// ---- statistics and tables ----

// medianBy is the median of g over xs.
func medianBy[T any](xs []T, g func(T) float64) float64 {
	vs := make([]float64, len(xs))
	for i, x := range xs {
		vs[i] = g(x)
	}
	return median(vs)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func minMax(xs []float64) (float64, float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	lo, hi := xs[0], xs[0]
	for _, x := range xs {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

// table prints rows under headers: the first column left-aligned, the
// others right-aligned, two spaces apart.
func table(w io.Writer, headers []string, rows [][]string) {
	width := make([]int, len(headers))
	all := append([][]string{headers}, rows...)
	for _, row := range all {
		for i, c := range row {
			if i < len(width) {
				width[i] = max(width[i], len([]rune(c)))
			}
		}
	}
	line := func(row []string) {
		var b strings.Builder
		for i := range width {
			c := ""
			if i < len(row) {
				c = row[i]
			}
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i > 0 {
				b.WriteString("  ")
			}
			if i == 0 {
				b.WriteString(c + pad)
			} else {
				b.WriteString(pad + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(headers)
	seps := make([]string, len(headers))
	for i := range seps {
		seps[i] = strings.Repeat("-", width[i])
	}
	line(seps)
	for _, row := range rows {
		line(row)
	}
}

// f formats a float with d decimals and thousands separators.
func f(x float64, d int) string {
	s := strconv.FormatFloat(x, 'f', d, 64)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, hasFrac := strings.Cut(s, ".")
	var b strings.Builder
	for i, ch := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	out := b.String()
	if hasFrac {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out
}

func n(x int) string { return f(float64(x), 0) }

// verdict compares a value with a target: "ok" or "MISSED".
func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}

// ---- concurrency helpers ----

// parallel runs fn(i) for i in [0, count) on workers goroutines and returns
// the first error; it stops handing out work after an error or when ctx
// ends.
func parallel(ctx context.Context, workers, count int, fn func(ctx context.Context, i int) error) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= count {
					return
				}
				if err := fn(ctx, i); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// firstFailure keeps the first error a run's goroutines meet and cancels
// the run when it comes; later errors (often the cancel's own) are
// dropped.
type firstFailure struct {
	mu     sync.Mutex
	err    error
	cancel context.CancelFunc
}

func (f *firstFailure) fail(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
	f.cancel()
}

// first is the first error, nil when none.
func (f *firstFailure) first() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// loadResult is what a timed closed-loop run did.
type loadResult struct {
	ok, failed int64
	elapsed    time.Duration
}

func (l loadResult) opsPerSec() float64 {
	return float64(l.ok+l.failed) / l.elapsed.Seconds()
}

func (l loadResult) okPerSec() float64 { return float64(l.ok) / l.elapsed.Seconds() }

func (l loadResult) failPct() float64 {
	if l.ok+l.failed == 0 {
		return 0
	}
	return 100 * float64(l.failed) / float64(l.ok+l.failed)
}

// errFailedOp marks an operation that completed but did not succeed (a
// conflict); load counts it as failed instead of stopping.
var errFailedOp = errors.New("bench: operation failed")

// load runs fn in a closed loop on workers goroutines for d. fn returning
// errFailedOp counts as a failed op; any other error stops the run.
func load(ctx context.Context, workers int, d time.Duration, fn func(ctx context.Context, worker int, seq int64) error) (loadResult, error) {
	var ok, failed atomic.Int64
	var firstErr error
	var once sync.Once
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := int64(0); runCtx.Err() == nil && time.Now().Before(deadline); seq++ {
				err := fn(runCtx, w, seq)
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, errFailedOp):
					failed.Add(1)
				default:
					if runCtx.Err() != nil {
						return
					}
					once.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	res := loadResult{ok: ok.Load(), failed: failed.Load(), elapsed: time.Since(start)}
	if firstErr != nil {
		return res, firstErr
	}
	return res, ctx.Err()
}
