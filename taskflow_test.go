package taskflow

import (
	"errors"
	"testing"
)

// --- the state machine, in Go only ---

func TestStatusParseAndTerminal(t *testing.T) {
	for _, st := range Statuses() {
		got, err := ParseFlowStatus(string(st))
		if err != nil || got != st {
			t.Fatalf("ParseFlowStatus(%q) = %v, %v", st, got, err)
		}
	}
	if _, err := ParseFlowStatus("paused"); !errors.Is(err, ErrInvalidData) {
		t.Fatalf("unknown status: %v", err)
	}
	terminal := map[FlowStatus]bool{StatusFinished: true, StatusFailed: true, StatusCancelled: true}
	for _, st := range Statuses() {
		if st.IsTerminal() != terminal[st] {
			t.Fatalf("%s.IsTerminal() = %v", st, st.IsTerminal())
		}
	}
}

func TestTransitionGraph(t *testing.T) {
	edges := map[[2]FlowStatus]bool{
		{StatusCreated, StatusRunning}: true, {StatusCreated, StatusCancelled}: true,
		{StatusRunning, StatusWaiting}: true, {StatusRunning, StatusFinished}: true,
		{StatusRunning, StatusFailed}: true, {StatusRunning, StatusCancelled}: true,
		{StatusWaiting, StatusRunning}: true, {StatusWaiting, StatusFailed}: true,
		{StatusWaiting, StatusCancelled}: true,
	}
	for _, from := range Statuses() {
		for _, to := range Statuses() {
			if got := from.CanTransitionTo(to); got != edges[[2]FlowStatus{from, to}] {
				t.Errorf("%s -> %s = %v", from, to, got)
			}
		}
	}
}

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
