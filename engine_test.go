package taskflow

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRunStopsPromptly(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		eng := e.engine()
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		done := make(chan error, 1)
		ticked := make(chan struct{}, 64)
		go func() {
			done <- eng.RunWithReports(ctx, 10*time.Millisecond, func(TickReport) {
				select {
				case ticked <- struct{}{}:
				default:
				}
			})
		}()
		// Two ticks show it runs on its interval; a loaded machine may take
		// longer than 20 ms for them, so wait for them (bounded) rather
		// than count what a fixed sleep saw.
		for i := 0; i < 2; i++ {
			select {
			case <-ticked:
			case err := <-done:
				t.Fatalf("Run returned %v before its second tick", err)
			case <-time.After(10 * time.Second):
				t.Fatalf("only %d ticks within 10s", i)
			}
		}
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run returned %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not stop within 5s of cancel")
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
