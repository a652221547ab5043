package taskflow

import (
	"testing"
)

// --- the state machine, in Go only ---

func TestFlowTransitionToOrderOfChecks(t *testing.T) {
	f := &Flow{Status: StatusFinished, CancelRequested: true}
	wantErr(t, f.TransitionTo(StatusRunning), ErrAlreadyTerminal)
	f = &Flow{Status: StatusCreated, CancelRequested: true}
	wantErr(t, f.TransitionTo(StatusWaiting), ErrCancelPending)
	f = &Flow{Status: StatusCreated}
	wantErr(t, f.TransitionTo(StatusWaiting), ErrIllegalTransition)
	wantErr(t, f.TransitionTo(StatusFailed), ErrIllegalTransition)
	if err := f.TransitionTo(StatusRunning); err != nil || f.Status != StatusRunning {
		t.Fatalf("created -> running: %v %s", err, f.Status)
	}
	f.RequestCancel()
	if !f.CancelRequested {
		t.Fatal("RequestCancel did not set the flag")
	}
	if err := f.TransitionTo(StatusCancelled); err != nil {
		t.Fatal(err)
	}
	done := &Flow{Status: StatusFinished}
	done.RequestCancel()
	if done.CancelRequested {
		t.Fatal("RequestCancel on a terminal flow set the flag")
	}
}

// --- the manager on every backend ---

// --- concurrency and restart: the original's end-to-end tests ---
