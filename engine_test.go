package taskflow

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestRunStopsPromptly(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		ctx, cancel := context.WithCancel(e.ctx)
		done := make(chan error, 1)
		ticks := 0
		var mu sync.Mutex
		go func() {
			done <- eng.RunWithReports(ctx, 10*time.Millisecond, func(TickReport) { mu.Lock(); ticks++; mu.Unlock() })
		}()
		time.Sleep(60 * time.Millisecond)
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run returned %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Run did not stop within 2s of cancel")
		}
		mu.Lock()
		defer mu.Unlock()
		if ticks < 2 {
			t.Fatalf("only %d ticks", ticks)
		}
	})
}

func TestRunResumesDueTimer(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := e.waitingFlow(t, WaitTimer(e.clock.Now().Add(-time.Second)))
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		defer cancel()
		go func() { _ = e.engine().Run(ctx, 20*time.Millisecond) }()
		for ctx.Err() == nil {
			if g := must(t, try(e.m.Get(e.ctx, f.ID))); g.Status == StatusRunning {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatal("Run never resumed the due flow")
	})
}
