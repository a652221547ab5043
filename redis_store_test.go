package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

func TestPrefixValidation(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	for _, p := range []string{"", "a{b", "a}b", "has space", "tab\t", strings.Repeat("x", 200)} {
		if _, err := NewRedisStore(c, WithPrefix(p)); !errors.Is(err, ErrInvalidData) {
			t.Errorf("prefix %q: %v", p, err)
		}
	}
	if _, err := NewRedisStore(c, WithShards(0)); !errors.Is(err, ErrInvalidData) {
		t.Errorf("shards 0: %v", err)
	}
	if _, err := NewRedisStore(nil); !errors.Is(err, ErrInvalidData) {
		t.Errorf("nil client: %v", err)
	}
	if _, err := NewRedisStore(c, WithPrefix("app:taskflow")); err != nil {
		t.Errorf("good prefix: %v", err)
	}
}

func TestFlowStateSurvivesReopen(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateManaged(ctx, seedInput())))
		f = must(t, try(e.m.StartRunning(ctx, f.ID)))
		f = must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"verses_done": 10}, "verse-10")))
		f = must(t, try(e.m.SetWaiting(ctx, f.ID, json.RawMessage(`{"kind":"manual"}`))))
		steps := must(t, try(e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "r", Status: StepRunning})))
		events := must(t, try(e.m.ListEvents(ctx, f.ID, 100)))

		// A new client and a new manager: another process.
		m2 := NewManager(e.reopenStore(e.b.client(t)))
		re := must(t, try(m2.Get(ctx, f.ID)))
		if !reflect.DeepEqual(re, f) {
			t.Fatalf("reopened %+v\nwant %+v", re, f)
		}
		if re.Status != StatusWaiting || re.CurrentStep != "verse-10" || re.Revision != 3 {
			t.Fatalf("reopened: %+v", re)
		}
		st := stateOf(t, re)
		if st["verses_done"] != float64(10) || st["total"] != float64(31) {
			t.Fatalf("state %v", st)
		}
		if !reflect.DeepEqual(must(t, try(m2.ListEvents(ctx, f.ID, 100))), events) {
			t.Fatal("events differ after reopen")
		}
		if s2 := must(t, try(m2.ListSteps(ctx, f.ID))); len(s2) != 1 || !reflect.DeepEqual(s2[0], steps) {
			t.Fatalf("steps differ after reopen: %+v vs %+v", s2, steps)
		}
		resumed := must(t, try(m2.Resume(ctx, re.ID, nil)))
		if resumed.Status != StatusRunning || resumed.Wait != nil {
			t.Fatalf("resumed %+v", resumed)
		}
	})
}

// TestOneRoundTripPerMutation counts the commands a client sends.
func TestOneRoundTripPerMutation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		counter := &commandCounter{}
		c := e.b.client(t)
		c.AddHook(counter)
		m := NewManager(e.reopenStore(c))
		// The first create of a flow space records its layout (one more
		// round trip, once): let another store make it.
		must(t, try(e.m.CreateManaged(ctx, seedInput())))
		// Warm the script cache (and the connection) so EVALSHA hits.
		if err := m.Store().LoadScripts(ctx); err != nil {
			t.Fatal(err)
		}
		counts := map[string]int{}
		measure := func(name string, fn func() error) {
			t.Helper()
			counter.reset()
			if err := fn(); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			counts[name] = counter.count()
			if counts[name] != 1 {
				t.Logf("%s sent %v", name, counter.names)
			}
		}
		var f *Flow
		measure("CreateManaged", func() (err error) { f, err = m.CreateManaged(ctx, seedInput()); return })
		measure("StartRunning", func() error { _, err := m.StartRunning(ctx, f.ID); return err })
		measure("UpdateState", func() error { _, err := m.UpdateState(ctx, f.ID, map[string]int{"a": 1}, "s"); return err })
		measure("RecordStepObservation", func() error {
			_, err := m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "r", Status: StepRunning})
			return err
		})
		measure("SetWaiting", func() error { _, err := m.SetWaiting(ctx, f.ID, WaitManual()); return err })
		measure("Resume", func() error { _, err := m.Resume(ctx, f.ID, map[string]int{"b": 2}); return err })
		measure("RequestCancel", func() error { _, err := m.RequestCancel(ctx, f.ID); return err })
		measure("Cancel", func() error { _, err := m.Cancel(ctx, f.ID); return err })
		var g *Flow
		measure("CreateMirrored", func() (err error) { g, err = m.CreateMirrored(ctx, seedInput()); return })
		measure("Finish", func() error { _, err := m.Finish(ctx, g.ID, nil); return err })
		h := must(t, try(m.CreateMirrored(ctx, seedInput())))
		measure("Fail", func() error { _, err := m.Fail(ctx, h.ID, "r"); return err })
		measure("Get", func() error { _, err := m.Get(ctx, h.ID); return err })
		for name, n := range counts {
			if n != 1 {
				t.Errorf("%s sent %d commands, want 1", name, n)
			}
		}
		t.Logf("commands per call: %v", counts)
	})
}

type commandCounter struct {
	mu    sync.Mutex
	n     int
	names []string
}

func (c *commandCounter) reset() { c.mu.Lock(); c.n = 0; c.names = nil; c.mu.Unlock() }

func (c *commandCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name != "hello" && name != "client" {
			c.mu.Lock()
			c.n++
			c.names = append(c.names, name)
			c.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.mu.Lock()
		c.n += len(cmds)
		for _, cmd := range cmds {
			c.names = append(c.names, cmd.Name())
		}
		c.mu.Unlock()
		return next(ctx, cmds)
	}
}

func TestScriptFlushIsInvisible(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		if err := e.client.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"a": 1}, "")))
		if err := e.client.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		// Pipelined reads fall back too.
		if got := must(t, try(e.m.ListByOwner(ctx, seedInput().OwnerSessionKey))); len(got) != 1 {
			t.Fatalf("list after flush: %d", len(got))
		}
	})
}

func TestContextDeadlineHonoured(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx, cancel := context.WithCancel(e.ctx)
		cancel()
		_, err := e.m.CreateManaged(ctx, seedInput())
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled context: %v", err)
		}
	})
}

func TestShardCountMismatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := must(t, try(e.m.CreateMirrored(e.ctx, seedInput())))
		wrong, err := NewRedisStore(e.b.client(t), e.b.storeOptions(WithPrefix(e.prefix), WithShards(8))...)
		if err != nil {
			t.Fatal(err)
		}
		m := NewManager(wrong)
		_, err = m.Get(e.ctx, f.ID)
		wantErr(t, err, ErrLayoutMismatch)
		if !strings.Contains(err.Error(), "16 shards") {
			t.Fatalf("unclear: %v", err)
		}
		_, err = m.CreateManaged(e.ctx, seedInput())
		wantErr(t, err, ErrLayoutMismatch)
		_, err = m.ListByOwner(e.ctx, "o")
		wantErr(t, err, ErrLayoutMismatch)
		if rep := NewWaitEngine(m, WithLogger(quietLogger())).Tick(e.ctx); !errors.Is(rep.Err, ErrLayoutMismatch) {
			t.Fatalf("tick: %v", rep.Err)
		}
		// The right count still works.
		must(t, try(NewManager(e.reopenStore(e.b.client(t))).Get(e.ctx, f.ID)))
	})
}

// Reading an empty flow space writes nothing; the first write records the
// layout, and a store with another shard count is refused after that.
func TestReadingNeverWritesLayout(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		s := e.reopenStore(e.client)
		m := NewManager(s)
		if err := s.LoadScripts(e.ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := m.ListByStatus(e.ctx, StatusRunning); err != nil {
			t.Fatal(err)
		}
		if _, err := m.ListRecent(e.ctx, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Get(e.ctx, uuid.New()); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get: %v", err)
		}
		if _, err := m.ListEvents(e.ctx, uuid.New(), 10); err != nil {
			t.Fatal(err)
		}
		if rep, err := s.verify(e.ctx); err != nil || !rep.OK() {
			t.Fatalf("Verify: %+v %v", rep, err)
		}
		if keys := e.dump(); len(keys) != 0 {
			t.Fatalf("reading an empty flow space wrote %v", keys)
		}
		// Another shard count reads the empty space without complaint.
		other, err := NewRedisStore(e.client, append(e.options, WithShards(3))...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := NewManager(other).ListByStatus(e.ctx, StatusRunning); err != nil {
			t.Fatalf("empty space with another shard count: %v", err)
		}
		if _, err := m.CreateManaged(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"}); err != nil {
			t.Fatal(err)
		}
		if n := e.client.Exists(e.ctx, s.keys.layout()).Val(); n != 1 {
			t.Fatal("the first write did not record the layout")
		}
		third, err := NewRedisStore(e.client, append(e.options, WithShards(3))...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := NewManager(third).ListByStatus(e.ctx, StatusRunning); !errors.Is(err, ErrLayoutMismatch) {
			t.Fatalf("list with another shard count: %v, want ErrLayoutMismatch", err)
		}
		if _, err := NewManager(third).CreateManaged(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"}); !errors.Is(err, ErrLayoutMismatch) {
			t.Fatalf("create with another shard count: %v, want ErrLayoutMismatch", err)
		}
	})
}

func TestLayoutRecordsPlacement(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		must(t, try(e.m.CreateMirrored(e.ctx, seedInput())))
		got := e.client.HGetAll(e.ctx, e.prefix+":{meta}:layout").Val()
		if got["shards"] != "16" || got["hash"] != layoutHash || len(got) != 2 {
			t.Fatalf("layout %v", got)
		}
	})
}

// A flow space written before the placement was recorded (FNV-1a) is
// refused, not misread, by every store that opens it.
func TestLayoutRefusesOldPlacement(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		key := e.prefix + ":{meta}:layout"
		e.client.HSet(e.ctx, key, "shards", "16")
		for i := 0; i < 2; i++ {
			m := NewManager(e.reopenStore(e.b.client(t)))
			_, err := m.Get(e.ctx, uuid.New())
			wantErr(t, err, ErrLayoutMismatch)
			if !strings.Contains(err.Error(), `"fnv32a"`) {
				t.Fatalf("unclear: %v", err)
			}
			// A write is refused too, and marks the space for every store.
			_, err = m.CreateManaged(e.ctx, seedInput())
			wantErr(t, err, ErrLayoutMismatch)
		}
		if got := e.client.HGet(e.ctx, key, "hash").Val(); got != legacyHash {
			t.Fatalf("layout hash %q, want %q recorded", got, legacyHash)
		}
	})
}

// TestStoreNow: the store's clock is the one WithClock set.
func TestStoreNow(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		if got := e.store.Now(); !got.Equal(e.clock.Now()) {
			t.Fatalf("Now: %v, want the test's clock %v", got, e.clock.Now())
		}
		e.clock.Advance(time.Hour)
		if got := e.store.Now(); !got.Equal(e.clock.Now()) {
			t.Fatalf("Now after an hour: %v, want %v", got, e.clock.Now())
		}
	})
}

// withAutoPipeline returns a client built as c was (its dialer and
// timeouts too) with AutoPipelineOptions set, so that a store on it sends
// its scripts through go-redis's AutoPipeliner; c is closed.
func withAutoPipeline(t testing.TB, c redis.UniversalClient) redis.UniversalClient {
	t.Helper()
	var out redis.UniversalClient
	switch cl := c.(type) {
	case *redis.Client:
		o := *cl.Options()
		o.AutoPipelineOptions = &redis.AutoPipelineOptions{}
		out = redis.NewClient(&o)
	case *redis.ClusterClient:
		o := *cl.Options()
		o.AutoPipelineOptions = &redis.AutoPipelineOptions{}
		out = redis.NewClusterClient(&o)
	default:
		t.Fatalf("no auto-pipelined client like a %T", c)
	}
	_ = c.Close()
	t.Cleanup(func() { _ = out.Close() })
	return out
}

// pipelineDepth records the deepest pipeline a client sent.
type pipelineDepth struct {
	mu      sync.Mutex
	deepest int
	scripts int
}

func (p *pipelineDepth) DialHook(next redis.DialHook) redis.DialHook { return next }
func (p *pipelineDepth) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}
func (p *pipelineDepth) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		n := 0
		for _, c := range cmds {
			if name := c.Name(); name == "fcall" || name == "evalsha" {
				n++
			}
		}
		p.mu.Lock()
		p.deepest = max(p.deepest, n)
		p.scripts += n
		p.mu.Unlock()
		return next(ctx, cmds)
	}
}

// TestAutoPipelinedClient: a client built with AutoPipelineOptions has the
// store send its scripts through its AutoPipeliner, so concurrent calls
// share round trips; a fleet on it creates, claims, hands off and
// finishes every flow exactly once, and leaves a consistent flow space.
func TestAutoPipelinedClient(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		c := withAutoPipeline(t, e.b.client(t))
		depth := &pipelineDepth{}
		c.AddHook(depth)
		store := e.reopenStore(c)
		if _, ok := store.calls.(*redis.AutoPipeliner); !ok {
			t.Fatalf("the store sends scripts on a %T, want the client's AutoPipeliner", store.calls)
		}
		if plain := e.reopenStore(e.b.client(t)); plain.calls != plain.client {
			t.Fatalf("a client without AutoPipelineOptions: scripts sent on a %T", plain.calls)
		}
		bad := redis.NewClient(&redis.Options{Addr: "127.0.0.1:0",
			AutoPipelineOptions: &redis.AutoPipelineOptions{MaxConcurrentBatches: 2}}) // needs Unordered
		defer bad.Close()
		if _, err := NewRedisStore(bad, e.options...); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("a client with invalid AutoPipelineOptions: %v, want ErrInvalidData", err)
		}
		m := NewManager(store)
		defer m.Close()
		const ctl, n = "ctl/autopipe", 120
		var wg sync.WaitGroup
		errs := make(chan error, 2*n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := m.CreateMirrored(ctx, fleetInput(ctl)); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		var finished sync.Map
		var count sync.WaitGroup
		count.Add(n)
		runCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for runCtx.Err() == nil {
					f, l, err := m.Claim(runCtx, ctl, "w", time.Minute, WithClaimWait(200*time.Millisecond))
					if err != nil {
						if runCtx.Err() == nil {
							errs <- err
						}
						return
					}
					for f != nil {
						if _, dup := finished.LoadOrStore(f.ID, true); dup {
							errs <- errors.New("flow " + f.ID.String() + " claimed twice")
						}
						cur := f.ID
						if _, err := m.Finish(runCtx, cur, nil, WithLease(l), WithNext(&f, &l, time.Minute)); err != nil {
							errs <- err
							return
						}
						count.Done()
					}
				}
			}()
		}
		count.Wait()
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		st := must(t, try(m.Stats(ctx)))
		if st.Flows[StatusFinished] != n || st.Leases.Held != 0 {
			t.Fatalf("%d finished, %d leases held; want %d and 0", st.Flows[StatusFinished], st.Leases.Held, n)
		}
		depth.mu.Lock()
		deepest, scripts := depth.deepest, depth.scripts
		depth.mu.Unlock()
		if scripts < 2*n || deepest < 2 {
			t.Fatalf("%d scripts went through pipelines, the deepest with %d: want at least %d, and calls sharing a round trip", scripts, deepest, 2*n)
		}
		t.Logf("%d scripts pipelined, at most %d in one round trip", scripts, deepest)
		requireVerifyClean(t, m)
	})
}
