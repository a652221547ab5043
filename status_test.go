package taskflow

import (
	"errors"
	"testing"
)

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
