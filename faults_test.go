package taskflow

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/internal/testbackend"

	"github.com/taskflow-dev/taskflow/fsck"
)

// Fault tests run against a redis-server each test starts itself, in a
// temp dir, on a free loopback port: they kill, restart and pause it.

// redisServer is a private server of internal/testbackend under the
// names the fault tests use.
type redisServer struct {
	srv  *testbackend.Server
	port int
}

// startRedisServer starts redis-server with extra config arguments.
func startRedisServer(t testing.TB, extra ...string) *redisServer {
	t.Helper()
	srv := testbackend.StartRedisServer(t, extra...)
	return &redisServer{srv: srv, port: srv.Port}
}

// start starts the server again after kill, on the same port and dir.
func (s *redisServer) start() { s.srv.Start() }

func (s *redisServer) addr() string { return s.srv.Addr() }

// kill stops the server with SIGKILL: no shutdown save, no goodbye.
func (s *redisServer) kill() { s.srv.Kill() }

// client returns a client with context deadlines honoured.
func (s *redisServer) client(t testing.TB) *redis.Client { return s.srv.Client(t) }

func (s *redisServer) backend() backend {
	return backend{name: "own", real: true, client: func(t testing.TB) redis.UniversalClient { return s.client(t) }}
}

// ackLog records acknowledged mutations: the last revision and status a
// call returned for each flow.
type ackLog struct {
	mu   sync.Mutex
	last map[uuid.UUID]*Flow
	n    int
	sink func(*Flow) // called for every acknowledgement, when set
}

func newAckLog() *ackLog { return &ackLog{last: map[uuid.UUID]*Flow{}} }

func (a *ackLog) ack(f *Flow) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n++
	if a.sink != nil {
		a.sink(f)
	}
	if old := a.last[f.ID]; old == nil || f.Revision >= old.Revision {
		a.last[f.ID] = f
	}
}

// checkAcked proves every acknowledged mutation is in Redis: each flow is
// at least at the revision a call returned, and exactly there when nothing
// else could have moved it.
func (a *ackLog) checkAcked(t testing.TB, m *Manager) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, want := range a.last {
		got, err := m.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("acknowledged flow %s: %v", id, err)
		}
		if got.Revision < want.Revision {
			t.Fatalf("flow %s lost acknowledged work: revision %d < %d", id, got.Revision, want.Revision)
		}
	}
}

func requireVerifyClean(t testing.TB, m *Manager) *fsck.Report {
	t.Helper()
	rep, err := m.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("Verify found %d problems: %+v", len(rep.Problems), rep.Problems)
	}
	return rep
}

// workOnce drives one flow through a random path and acknowledges each
// step; it returns the first error.
func workOnce(ctx context.Context, m *Manager, acks *ackLog, rnd *rand.Rand, now time.Time) error {
	f, err := m.CreateManaged(ctx, seedInput())
	if err != nil {
		return err
	}
	acks.ack(f)
	steps := []func() (*Flow, error){
		func() (*Flow, error) { return m.StartRunning(ctx, f.ID) },
		func() (*Flow, error) { return m.UpdateState(ctx, f.ID, map[string]int{"n": rnd.IntN(100)}, "step") },
	}
	switch rnd.IntN(6) {
	case 0:
		steps = append(steps, func() (*Flow, error) { return m.Finish(ctx, f.ID, map[string]bool{"ok": true}) })
	case 1:
		steps = append(steps, func() (*Flow, error) { return m.Fail(ctx, f.ID, "boom") })
	case 2:
		steps = append(steps,
			func() (*Flow, error) { return m.SetWaiting(ctx, f.ID, WaitTimer(now.Add(-time.Second))) })
	case 3:
		steps = append(steps,
			func() (*Flow, error) { return m.SetWaiting(ctx, f.ID, WaitExternalEvent("mail", f.ID.String())) },
			func() (*Flow, error) { return m.RequestCancel(ctx, f.ID) })
	case 4:
		steps = append(steps,
			func() (*Flow, error) { return m.SetWaiting(ctx, f.ID, WaitManual()) },
			func() (*Flow, error) { return m.Resume(ctx, f.ID, map[string]int{"r": 1}) },
			func() (*Flow, error) { return m.Cancel(ctx, f.ID) })
	}
	for i, step := range steps {
		g, err := step()
		if err != nil {
			return err
		}
		acks.ack(g)
		if i == 1 {
			// A step is recorded while the flow is live: a terminal or
			// cancel-requested flow takes none.
			if _, err := m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "run-1", Status: StepSucceeded}); err != nil {
				return err
			}
		}
	}
	return nil
}

func TestFaultPersistenceAOFKill9(t *testing.T) {
	srv := startRedisServer(t, "--appendonly", "yes", "--appendfsync", "always")
	e := newEnv(t, srv.backend())
	acks := newAckLog()
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		if err := workOnce(e.ctx, e.m, acks, rnd, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	fs := driveEveryStatus(t, e)
	for _, f := range fs {
		acks.ack(must(t, try(e.m.Get(e.ctx, f.ID))))
	}
	srv.kill() // kill -9: no shutdown, no final save
	srv.start()
	m2 := NewManager(e.reopenStore(srv.client(t)))
	acks.checkAcked(t, m2)
	rep := requireVerifyClean(t, m2)
	t.Logf("persistence: %d mutations acknowledged, %d flows found after kill -9, %d problems", acks.n, rep.Flows, len(rep.Problems))
	if rep.Flows != len(acks.last) {
		t.Fatalf("flows after restart %d, acknowledged %d", rep.Flows, len(acks.last))
	}
}

// The crash child: hammer mutations and ticks until killed, printing one
// ACK line per acknowledged mutation.
func TestCrashChildHelper(t *testing.T) {
	addr, prefix := os.Getenv("TASKFLOW_CRASH_ADDR"), os.Getenv("TASKFLOW_CRASH_PREFIX")
	if addr == "" {
		t.Skip("only runs as the crash test's child process")
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	s, err := NewRedisStore(c, WithPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(s)
	eng := NewWaitEngine(m, WithLogger(quietLogger()))
	out := bufio.NewWriter(os.Stdout)
	acks := newAckLog()
	acks.sink = func(f *Flow) {
		fmt.Fprintf(out, "ACK %s %d\n", f.ID, f.Revision)
		out.Flush()
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(w)))
			for {
				_ = workOnce(context.Background(), m, acks, rnd, time.Now())
			}
		}(w)
	}
	for {
		eng.Tick(context.Background())
	}
}

func TestFaultClientCrashMidWork(t *testing.T) {
	if os.Getenv("TASKFLOW_CRASH_ADDR") != "" {
		t.Skip("in the child")
	}
	srv := startRedisServer(t)
	e := newEnv(t, srv.backend())
	acked := map[uuid.UUID]int64{}
	total := 0
	rnd := rand.New(rand.NewPCG(3, 4))
	for round := 0; round < 20; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChildHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), "TASKFLOW_CRASH_ADDR="+srv.addr(), "TASKFLOW_CRASH_PREFIX="+e.prefix)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		time.Sleep(time.Duration(150+rnd.IntN(350)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		for l := range lines {
			var id string
			var rev int64
			if _, err := fmt.Sscanf(l, "ACK %s %d", &id, &rev); err == nil {
				total++
				fid := uuid.MustParse(id)
				if rev > acked[fid] {
					acked[fid] = rev
				}
			}
		}
		_ = cmd.Wait()
	}
	if total == 0 {
		t.Fatal("the child acknowledged nothing")
	}
	for id, rev := range acked {
		got := must(t, try(e.m.Get(e.ctx, id)))
		if got.Revision < rev {
			t.Fatalf("flow %s at %d, acknowledged %d", id, got.Revision, rev)
		}
	}
	rep := requireVerifyClean(t, e.m)
	// Every flow is reachable by its indexes: the owner index lists them all.
	n := 0
	page := &FlowPage{}
	for first := true; first || page.Next != ""; first = false {
		page = must(t, try(e.m.ListByOwnerPage(e.ctx, seedInput().OwnerSessionKey, WithLimit(1000), WithCursor(page.Next))))
		n += len(page.Flows)
	}
	if n != rep.Flows {
		t.Fatalf("owner index reaches %d of %d flows", n, rep.Flows)
	}
	t.Logf("client crash: 20 SIGKILLs, %d mutations acknowledged on %d flows, %d flows found, torn 0", total, len(acked), rep.Flows)
}

func TestFaultOutage(t *testing.T) {
	srv := startRedisServer(t, "--appendonly", "yes", "--appendfsync", "always")
	e := newEnv(t, srv.backend())
	deadline := 300 * time.Millisecond
	var slowest atomic.Int64
	var okBefore, okAfter, failures atomic.Int64
	var restarted atomic.Bool
	timed := func(fn func(ctx context.Context) error) {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		start := time.Now()
		err := fn(ctx)
		d := time.Since(start)
		for {
			cur := slowest.Load()
			if int64(d) <= cur || slowest.CompareAndSwap(cur, int64(d)) {
				break
			}
		}
		switch {
		case err != nil:
			failures.Add(1)
		case restarted.Load():
			okAfter.Add(1)
		default:
			okBefore.Add(1)
		}
	}
	logs := &countingHandler{}
	eng := NewWaitEngine(NewManager(e.reopenStore(srv.client(t))), WithLogger(slog.New(logs)), WithBridgeBlock(50*time.Millisecond))
	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = eng.Run(runCtx, 50*time.Millisecond) }()
	go func() { defer wg.Done(); _ = eng.RunResumeBridge(runCtx) }()
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				timed(func(ctx context.Context) error {
					f, err := e.m.CreateMirrored(ctx, seedInput())
					if err != nil {
						return err
					}
					if _, err := e.m.SetWaiting(ctx, f.ID, WaitExternalEvent("t", f.ID.String())); err != nil {
						return err
					}
					return e.m.PublishResume(ctx, ResumeRequest{FlowID: f.ID, Topic: "t", CorrelationID: f.ID.String()})
				})
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	srv.kill()
	time.Sleep(3 * time.Second)
	srv.start()
	restarted.Store(true)
	// Work resumes on its own: new calls succeed, and every request that
	// was published gets handled by the bridge.
	time.Sleep(1500 * time.Millisecond)
	stop()
	wg.Wait()
	if d := time.Duration(slowest.Load()); d > deadline+500*time.Millisecond {
		t.Fatalf("a call took %v with a %v deadline", d, deadline)
	}
	if okBefore.Load() == 0 || okAfter.Load() == 0 || failures.Load() == 0 {
		t.Fatalf("ok before %d, ok after %d, failures %d", okBefore.Load(), okAfter.Load(), failures.Load())
	}
	// One line when ticks start failing and one when they recover, for
	// the engine loop and for the bridge: not one per tick.
	for _, msg := range []string{
		"taskflow: engine tick failing; will keep trying", "taskflow: engine tick recovered",
		"taskflow: resume bridge failing; will keep trying", "taskflow: resume bridge recovered",
	} {
		if n := logs.count(msg); n != 1 {
			t.Errorf("logged %q %d times during one outage, want once (all: %v)", msg, n, logs.all())
		}
	}
	// Drain: flows whose resume request was published are resumed by a
	// bridge that runs again.
	eng2 := NewWaitEngine(e.m, WithLogger(quietLogger()), WithBridgeBlock(50*time.Millisecond), WithClaimAfter(100*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	go func() { _ = eng2.RunResumeBridge(ctx) }()
	for ctx.Err() == nil {
		if n, _ := e.client.XLen(e.ctx, e.store.keys.bridge()).Result(); n == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	requireVerifyClean(t, e.m)
	t.Logf("outage: slowest call %v (deadline %v); %d ok before, %d failed, %d ok after restart",
		time.Duration(slowest.Load()), deadline, okBefore.Load(), failures.Load(), okAfter.Load())
}

func TestFaultScriptFlushUnderLoad(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		ctx, stop := context.WithTimeout(e.ctx, 1500*time.Millisecond)
		defer stop()
		var errs atomic.Int64
		var ops atomic.Int64
		var wg sync.WaitGroup
		acks := newAckLog()
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				rnd := rand.New(rand.NewPCG(uint64(w), 9))
				for ctx.Err() == nil {
					if err := workOnce(e.ctx, e.m, acks, rnd, e.clock.Now()); err != nil {
						errs.Add(1)
						t.Errorf("call failed after SCRIPT FLUSH: %v", err)
						return
					}
					ops.Add(1)
					if rep := eng.TickAt(e.ctx, e.clock.Now()); rep.Errors != 0 {
						t.Errorf("tick failed after SCRIPT FLUSH: %v", rep.Err)
						return
					}
				}
			}(w)
		}
		flushes := 0
		for ctx.Err() == nil {
			if err := e.client.ScriptFlush(e.ctx).Err(); err != nil {
				t.Fatal(err)
			}
			flushes++
			time.Sleep(10 * time.Millisecond)
		}
		wg.Wait()
		if errs.Load() != 0 || ops.Load() == 0 {
			t.Fatalf("errors %d, ops %d", errs.Load(), ops.Load())
		}
		requireVerifyClean(t, e.m)
		t.Logf("%d SCRIPT FLUSHes under %d flows driven: no error", flushes, ops.Load())
	})
}

func TestFaultSlowRedisHonoursDeadline(t *testing.T) {
	srv := startRedisServer(t, "--enable-debug-command", "yes")
	e := newEnv(t, srv.backend())
	f := must(t, try(e.m.CreateMirrored(e.ctx, seedInput())))
	other := srv.client(t)
	go func() { _ = other.Do(context.Background(), "DEBUG", "SLEEP", "2").Err() }()
	time.Sleep(100 * time.Millisecond)
	for _, call := range []struct {
		name string
		fn   func(ctx context.Context) error
	}{
		{"UpdateState", func(ctx context.Context) error {
			_, err := e.m.UpdateState(ctx, f.ID, map[string]int{"a": 1}, "")
			return err
		}},
		{"Tick", func(ctx context.Context) error { return NewWaitEngine(e.m, WithLogger(quietLogger())).Tick(ctx).Err }},
		{"ListByOwner", func(ctx context.Context) error {
			_, err := e.m.ListByOwner(ctx, f.OwnerSessionKey)
			return err
		}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		err := call.fn(ctx)
		took := time.Since(start)
		cancel()
		if err == nil || !(errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "timeout")) {
			t.Fatalf("%s on a sleeping server: %v", call.name, err)
		}
		if took > 700*time.Millisecond {
			t.Fatalf("%s took %v with a 200ms deadline", call.name, took)
		}
	}
	// Work goes on when the server wakes.
	time.Sleep(2 * time.Second)
	must(t, try(e.m.UpdateState(e.ctx, f.ID, map[string]int{"b": 2}, "")))
}

// countingHandler is a slog handler that counts messages.
type countingHandler struct {
	mu   sync.Mutex
	msgs []string
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.msgs = append(h.msgs, r.Message)
	h.mu.Unlock()
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func (h *countingHandler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

func (h *countingHandler) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.msgs...)
}

// startCluster starts a 3-master, 3-replica Redis Cluster of its own.
func startCluster(t *testing.T) (*redis.ClusterClient, []*redisServer) {
	t.Helper()
	var nodes []*redisServer
	var addrs []string
	for i := 0; i < 6; i++ {
		s := startRedisServer(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
			"--cluster-config-file", "nodes.conf", "--appendonly", "no")
		nodes = append(nodes, s)
		addrs = append(addrs, s.addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("cluster create: %v\n%s", err, out)
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	for i := 0; i < 100; i++ {
		info, _ := nodes[0].client(t).ClusterInfo(context.Background()).Result()
		if strings.Contains(info, "cluster_state:ok") && c.Ping(context.Background()).Err() == nil {
			// every node must agree before the test starts
			okAll := true
			for _, n := range nodes {
				ni, _ := n.client(t).ClusterInfo(context.Background()).Result()
				okAll = okAll && strings.Contains(ni, "cluster_state:ok")
			}
			if okAll {
				return c, nodes
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("cluster never became ok")
	return nil, nil
}

// TestFaultClusterFailover fails over the master of a shard in the middle
// of a stream of mutations: every call succeeds or errors, no
// acknowledged mutation is missing afterwards and no flow is torn.
func TestFaultClusterFailover(t *testing.T) {
	c, nodes := startCluster(t)
	b := backend{name: "own-cluster", real: true, client: func(t testing.TB) redis.UniversalClient { return c }}
	e := newEnv(t, b, WithClock(time.Now))
	// The master holding shard 0's slot, and its replica.
	master, err := c.MasterForKey(e.ctx, e.store.keys.tag(0))
	if err != nil {
		t.Fatal(err)
	}
	var replica *redisServer
	myID := strings.TrimSpace(master.Do(e.ctx, "CLUSTER", "MYID").Val().(string))
	for _, n := range nodes {
		role, _ := n.client(t).Do(e.ctx, "ROLE").Slice()
		if len(role) > 2 && role[0] == "slave" {
			out, _ := n.client(t).Do(e.ctx, "CLUSTER", "NODES").Text()
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, "myself") && strings.Contains(line, myID) {
					replica = n
				}
			}
		}
	}
	if replica == nil {
		t.Fatal("no replica of the shard's master")
	}
	// Flows in shard 0 and elsewhere.
	var ids []uuid.UUID
	for len(ids) < 64 {
		f := must(t, try(e.m.CreateMirrored(e.ctx, seedInput())))
		ids = append(ids, f.ID)
	}
	acks := newAckLog()
	ctx, stop := context.WithCancel(e.ctx)
	var wg sync.WaitGroup
	var okN, errN atomic.Int64
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				id := ids[(w*8+i)%len(ids)]
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				f, err := e.m.UpdateState(cctx, id, map[string]int{fmt.Sprintf("w%d", w): i}, "")
				cancel()
				if err != nil {
					errN.Add(1)
					continue
				}
				okN.Add(1)
				acks.ack(f)
			}
		}(w)
	}
	time.Sleep(300 * time.Millisecond)
	// A manual failover waits for the replica to catch up; under load it
	// can time out, so ask again (never FORCE: that could lose writes).
	promoted := false
	for attempt := 0; attempt < 4 && !promoted; attempt++ {
		if err := replica.client(t).Do(e.ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 200 && !promoted; i++ {
			role, _ := replica.client(t).Do(e.ctx, "ROLE").Slice()
			promoted = len(role) > 0 && role[0] == "master"
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(700 * time.Millisecond)
	stop()
	wg.Wait()
	acks.checkAcked(t, e.m)
	requireVerifyClean(t, e.m)
	role, _ := replica.client(t).Do(e.ctx, "ROLE").Slice()
	if len(role) == 0 || role[0] != "master" {
		t.Fatalf("the failover did not happen: %v", role)
	}
	t.Logf("failover: %d mutations acknowledged, %d errors, 0 missing, 0 torn", okN.Load(), errN.Load())
}
