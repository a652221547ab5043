package taskflow

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/observe"
)

// recorder keeps everything an Observer is told.
type recorder struct {
	mu     sync.Mutex
	ops    []observe.Op
	ticks  []observe.Tick
	claims []observe.Claim
	bridge []observe.Bridge
}

const testTraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func (r *recorder) observer() *observe.Observer {
	return &observe.Observer{
		Op:    func(_ context.Context, ev observe.Op) { r.mu.Lock(); r.ops = append(r.ops, ev); r.mu.Unlock() },
		Tick:  func(_ context.Context, ev observe.Tick) { r.mu.Lock(); r.ticks = append(r.ticks, ev); r.mu.Unlock() },
		Claim: func(_ context.Context, ev observe.Claim) { r.mu.Lock(); r.claims = append(r.claims, ev); r.mu.Unlock() },
		Bridge: func(_ context.Context, ev observe.Bridge) {
			r.mu.Lock()
			r.bridge = append(r.bridge, ev)
			r.mu.Unlock()
		},
		TraceParent: func(ctx context.Context) string {
			tp, _ := ctx.Value(tpKey{}).(string)
			return tp
		},
	}
}

type tpKey struct{}

// opLine renders an op event for comparison.
func opLine(ev observe.Op) string {
	s := ev.Op + "|" + ev.Event + "|" + ev.WaitKind + "|" + ev.Code + "|"
	if ev.Flow != nil {
		s += string(ev.Flow.Status)
	}
	return s
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.ops {
		out = append(out, opLine(ev))
	}
	r.ops = nil
	return out
}

func TestObserver(t *testing.T) {
	rec := &recorder{}
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.WithValue(e.ctx, tpKey{}, testTraceParent)
		rec.take()
		in := CreateManagedInput{ControllerID: "obs", Goal: "g", OwnerSessionKey: "o"}
		f := must(t, try(e.m.CreateManaged(ctx, in)))
		if f.TraceParent != testTraceParent {
			t.Fatalf("created flow's trace parent %q", f.TraceParent)
		}
		if got := must(t, try(e.m.Get(ctx, f.ID))); got.TraceParent != testTraceParent {
			t.Fatalf("stored trace parent %q", got.TraceParent)
		}
		must(t, try(e.m.StartRunning(ctx, f.ID)))
		cf, lease := must2(t)(e.m.Claim(ctx, "obs", "w1", time.Second, WithClaimWait(0)))
		if cf == nil || cf.TraceParent != testTraceParent {
			t.Fatalf("claimed %+v", cf)
		}
		must(t, try(e.m.Extend(ctx, lease, 2*time.Second)))
		must(t, try(e.m.SetWaiting(ctx, f.ID, WaitTimer(e.clock.Now().Add(time.Second)), WithLease(lease))))
		if _, err := e.m.Finish(ctx, f.ID, nil, WithLease(lease)); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("finish under an ended lease: %v", err)
		}
		e.clock.Advance(2 * time.Second)
		rep := e.engine().Tick(ctx)
		if rep.Resumed != 1 {
			t.Fatalf("tick %+v", rep)
		}
		_, lease = must2(t)(e.m.Claim(ctx, "obs", "w2", time.Second, WithClaimWait(0)))
		e.clock.Advance(2 * time.Second)
		if rep := e.engine().Tick(ctx); rep.LeasesExpired != 1 {
			t.Fatalf("tick %+v", rep)
		}
		if err := e.m.Release(ctx, lease); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("release of an expired lease: %v", err)
		}
		got := rec.take()
		want := []string{
			"create||||created",
			"transition|started|||running",
			"claim||||running",
			"extend_lease||||",
			"transition|waiting|||waiting",
			"transition|finished||LEASELOST|",
			"transition|resumed|timer||running",
			"claim||||running",
			"expire_lease||||running",
			"release_lease|||LEASELOST|",
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("ops:\n got %q\nwant %q", got, want)
		}
		rec.mu.Lock()
		if len(rec.claims) < 2 || rec.claims[len(rec.claims)-1].WorkerID != "w2" || rec.claims[len(rec.claims)-1].LeaseExpiresAt.IsZero() {
			t.Errorf("claims %+v", rec.claims)
		}
		if n := len(rec.ticks); n < 2 || rec.ticks[n-1].LeasesExpired != 1 || rec.ticks[n-2].Resumed != 1 {
			t.Errorf("ticks %+v", rec.ticks)
		}
		rec.mu.Unlock()

		// The bridge reports each message with its outcome.
		w := must(t, try(e.m.CreateMirrored(ctx, in)))
		must(t, try(e.m.SetWaiting(ctx, w.ID, WaitExternalEvent("mail", "m-1"))))
		must(t, try(0, e.m.PublishResume(ctx, ResumeRequest{FlowID: w.ID, Topic: "mail", CorrelationID: "m-1"})))
		must(t, try(0, e.m.PublishResume(ctx, ResumeRequest{Topic: "mail", CorrelationID: "nobody"})))
		if err := e.client.XAdd(ctx, &redis.XAddArgs{Stream: e.store.keys.bridge(), Values: []any{"junk", "x"}}).Err(); err != nil {
			t.Fatal(err)
		}
		eng := e.engine(WithBridgeBlock(20 * time.Millisecond))
		bctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = eng.RunResumeBridge(bctx); close(done) }()
		deadline := time.Now().Add(10 * time.Second)
		for {
			rec.mu.Lock()
			n := len(rec.bridge)
			rec.mu.Unlock()
			if n >= 3 || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done
		rec.mu.Lock()
		var outcomes []string
		for _, b := range rec.bridge {
			outcomes = append(outcomes, b.Outcome)
		}
		rec.bridge = nil
		rec.mu.Unlock()
		if fmt.Sprint(outcomes) != "[resumed nomatch malformed]" {
			t.Fatalf("bridge outcomes %v", outcomes)
		}
	}, WithObserver(rec.observer()))
}

func TestRefusalCode(t *testing.T) {
	for in, want := range map[error]string{
		errors.New("dial tcp: refused"):          "ERROR",
		redisErr("ERR LEASELOST"):                "LEASELOST",
		redisErr("REVISION 1 2"):                 "REVISION",
		redisErr("ERR user_script:1: bad thing"): "ERROR",
	} {
		if got := refusalCode(in); got != want {
			t.Errorf("refusalCode(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestValidTraceParent(t *testing.T) {
	for tp, want := range map[string]bool{
		testTraceParent: true,
		"":              false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7":            false,
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01":         false,
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01":         false,
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":         false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01":         false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\x00\x00": false,
	} {
		if got := validTraceParent(tp); got != want {
			t.Errorf("validTraceParent(%q) = %v", tp, got)
		}
	}
}

// redisErr is an error reply as go-redis returns it.
type redisErr string

func (e redisErr) Error() string { return string(e) }
func (redisErr) RedisError()     {}

// TestObserverTickSchedules: the observer's Tick carries the schedule
// fires the tick made and skipped.
func TestObserverTickSchedules(t *testing.T) {
	rec := &recorder{}
	forEachBackend(t, func(t *testing.T, e *env) {
		in := ScheduleInput{Name: "obs", Every: time.Second, CatchUp: CatchUpLast,
			Flow: CreateManagedInput{ControllerID: "obs", Goal: "g", OwnerSessionKey: "o"}}
		must(t, try(e.m.CreateSchedule(e.ctx, in)))
		e.clock.Advance(3*time.Second + 500*time.Millisecond) // three fire times: the last fires, two are skipped
		rep := e.engine().Tick(e.ctx)
		rec.mu.Lock()
		defer rec.mu.Unlock()
		last := rec.ticks[len(rec.ticks)-1]
		if rep.Fired != 1 || rep.Skipped != 2 || last.Fired != rep.Fired || last.Skipped != rep.Skipped {
			t.Fatalf("report %+v, observed %+v", rep, last)
		}
	}, WithObserver(rec.observer()))
}
