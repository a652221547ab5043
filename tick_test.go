package taskflow

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

func TestTickTimers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		now := e.clock.Now()
		f := e.waitingFlow(t, WaitTimer(now.Add(time.Hour)))
		rep := eng.TickAt(e.ctx, now)
		if rep.Scanned != 1 || rep.Resumed != 0 || rep.StillWaiting != 1 || rep.Errors != 0 {
			t.Fatalf("future timer: %+v", rep)
		}
		rep = eng.TickAt(e.ctx, now.Add(time.Hour))
		if rep.Scanned != 1 || rep.Resumed != 1 || rep.StillWaiting != 0 || rep.Errors != 0 {
			t.Fatalf("due timer: %+v", rep)
		}
		got := must(t, try(e.m.Get(e.ctx, f.ID)))
		if got.Status != StatusRunning || got.Wait != nil || got.Revision != f.Revision+1 {
			t.Fatalf("resumed flow: %+v", got)
		}
		ev := must(t, try(e.m.ListEvents(e.ctx, f.ID, 1)))[0]
		if ev.Kind != EventResumed || string(ev.Payload) != `{"state_patch":null}` {
			t.Fatalf("event %+v", ev)
		}
		rep = eng.TickAt(e.ctx, now.Add(2*time.Hour))
		if rep.Resumed != 0 || rep.Scanned != 0 {
			t.Fatalf("second tick: %+v", rep)
		}
	})
}

func TestTickLeavesManualAndExternal(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		m := e.waitingFlow(t, WaitManual())
		x := e.waitingFlow(t, WaitExternalEvent("mail", "m-1"))
		rep := eng.TickAt(e.ctx, e.clock.Now().Add(365*24*time.Hour))
		if rep.Scanned != 2 || rep.StillWaiting != 2 || rep.Resumed != 0 {
			t.Fatalf("report %+v", rep)
		}
		for _, id := range []uuid.UUID{m.ID, x.ID} {
			if got := must(t, try(e.m.Get(e.ctx, id))); got.Status != StatusWaiting {
				t.Fatalf("flow %s is %s", id, got.Status)
			}
		}
	})
}

func TestTickCancelsCancelRequested(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		now := e.clock.Now()
		a := e.waitingFlow(t, WaitManual())
		b := e.waitingFlow(t, WaitTimer(now.Add(-time.Minute))) // due, but cancel wins
		c := e.waitingFlow(t, WaitTimer(now.Add(time.Hour)))
		for _, f := range []*Flow{a, b, c} {
			must(t, try(e.m.RequestCancel(e.ctx, f.ID)))
		}
		rep := eng.TickAt(e.ctx, now)
		if rep.Cancelled != 3 || rep.Resumed != 0 || rep.StillWaiting != 0 || rep.Scanned != 3 {
			t.Fatalf("report %+v", rep)
		}
		for _, f := range []*Flow{a, b, c} {
			got := must(t, try(e.m.Get(e.ctx, f.ID)))
			if got.Status != StatusCancelled || got.Wait != nil {
				t.Fatalf("flow %+v", got)
			}
			if k := eventKinds(t, e, f.ID); k[0] != EventCancelled {
				t.Fatalf("events %v", k)
			}
		}
		for shard := 0; shard < e.store.Shards(); shard++ {
			if n := e.client.SCard(e.ctx, e.store.keys.cancelWait(shard)).Val(); n != 0 {
				t.Fatalf("cancelwait left %d", n)
			}
			if n := e.client.ZCard(e.ctx, e.store.keys.timers(shard)).Val(); n != 0 {
				t.Fatalf("timers left %d", n)
			}
		}
	})
}

func TestTickSkipsUnreadableWait(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		now := e.clock.Now()
		bad := e.waitingFlow(t, WaitTimer(now.Add(-time.Second)))
		good := e.waitingFlow(t, WaitTimer(now.Add(-time.Second)))
		if err := e.client.HSet(e.ctx, e.store.keys.flow(bad.ID), "wait", "}garbage{").Err(); err != nil {
			t.Fatal(err)
		}
		rep := eng.TickAt(e.ctx, now)
		if rep.Resumed != 1 || rep.Errors != 1 || rep.StillWaiting != 1 {
			t.Fatalf("report %+v", rep)
		}
		if g := must(t, try(e.m.Get(e.ctx, good.ID))); g.Status != StatusRunning {
			t.Fatal("good flow not resumed")
		}
		// Reported once, not on every tick.
		if rep := eng.TickAt(e.ctx, now); rep.Errors != 0 {
			t.Fatalf("second tick %+v", rep)
		}
	})
}

// TestFleetResumesEachDueFlowOnce: four engines on four clients tick the
// same flow space at once; every due flow is resumed exactly once.
func TestFleetResumesEachDueFlowOnce(t *testing.T) {
	const due, notDue, engines = 2000, 50, 4
	forEachBackend(t, func(t *testing.T, e *env) {
		now := e.clock.Now()
		ids := fillWaiting(t, e, due, now.Add(-time.Minute))
		fillWaiting(t, e, notDue, now.Add(time.Hour))
		reports := make([]TickReport, engines)
		var wg sync.WaitGroup
		for i := 0; i < engines; i++ {
			eng := NewWaitEngine(NewManager(e.reopenStore(e.b.client(t))), WithLogger(quietLogger()), WithTickBatch(50))
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				reports[i] = eng.TickAt(e.ctx, now)
			}(i)
		}
		wg.Wait()
		sum := 0
		for _, r := range reports {
			if r.Errors != 0 {
				t.Fatalf("report with errors: %+v", r)
			}
			sum += r.Resumed
		}
		if sum != due {
			t.Fatalf("resumed %d in all, want %d (%+v)", sum, due, reports)
		}
		for _, id := range ids {
			if n := countKind(eventKinds(t, e, id), EventResumed); n != 1 {
				t.Fatalf("flow %s has %d resumed events", id, n)
			}
		}
		left := 0
		for shard := 0; shard < e.store.Shards(); shard++ {
			left += int(e.client.ZCount(e.ctx, e.store.keys.timers(shard), "-inf", fmt.Sprint(now.UnixMilli())).Val())
		}
		if left != 0 {
			t.Fatalf("%d due timers left", left)
		}
		if rep := NewWaitEngine(e.m, WithLogger(quietLogger())).TickAt(e.ctx, now); rep.StillWaiting != notDue || rep.Resumed != 0 {
			t.Fatalf("after: %+v", rep)
		}
	})
}

// fillWaiting creates n waiting flows with a timer at `at`, pipelining the
// manager's scripts for speed.
func fillWaiting(t testing.TB, e *env, n int, at time.Time) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, 0, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f, err := e.m.CreateMirrored(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})
			if err == nil {
				_, err = e.m.SetWaiting(e.ctx, f.ID, WaitTimer(at))
			}
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			ids = append(ids, f.ID)
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return ids
}

// An index entry that names no flow is a normal race between engines (or
// a flow pruned meanwhile): the tick drops it and says so at debug level,
// not as a warning. Only a drop with an error behind it warns.
func TestTickDropWithoutErrorIsNotAWarning(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		var logs bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		id := uuid.New()
		shard := e.store.keys.shardOf(id)
		due := float64(e.clock.Now().Add(-time.Minute).UnixMilli())
		if err := e.client.ZAdd(e.ctx, e.store.keys.timers(shard), redis.Z{Score: due, Member: id.String()}).Err(); err != nil {
			t.Fatal(err)
		}
		rep := e.engine(WithLogger(logger)).Tick(e.ctx)
		if rep.Dropped != 1 || rep.Err != nil {
			t.Fatalf("report %+v", rep)
		}
		if strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "level=DEBUG") ||
			!strings.Contains(logs.String(), "dropped=1") {
			t.Fatalf("logs:\n%s", logs.String())
		}
	})
}
