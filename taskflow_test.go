package taskflow

import (
	"testing"

	"github.com/google/uuid"
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

// TestTransitionErrorReadsPlainly: a refused move says what the flow is
// and what was asked, in words (it once read "cannot move of flow X from
// cancelled to cancelled").
func TestTransitionErrorReadsPlainly(t *testing.T) {
	id := uuid.MustParse("6f1c2a7e-0000-4000-8000-000000000001")
	for _, c := range []struct {
		err  *TransitionError
		want string
	}{
		{&TransitionError{FlowID: id, From: StatusCancelled, To: StatusCancelled, Err: ErrAlreadyTerminal},
			ErrAlreadyTerminal.Error() + ": flow " + id.String() + " is already cancelled"},
		{&TransitionError{FlowID: id, From: StatusFinished, To: StatusRunning, Err: ErrAlreadyTerminal},
			ErrAlreadyTerminal.Error() + ": flow " + id.String() + " is finished and cannot become running"},
		{&TransitionError{FlowID: id, From: StatusFailed, Err: ErrAlreadyTerminal},
			ErrAlreadyTerminal.Error() + ": flow " + id.String() + " is failed and cannot change"},
		{&TransitionError{FlowID: id, From: StatusRunning, To: StatusWaiting, Err: ErrCancelPending},
			ErrCancelPending.Error() + ": flow " + id.String() + " has a cancel request and cannot become waiting; only cancel is allowed"},
		{&TransitionError{From: StatusCreated, To: StatusWaiting, Err: ErrIllegalTransition},
			ErrIllegalTransition.Error() + ": the flow cannot move from created to waiting"},
	} {
		if got := c.err.Error(); got != c.want {
			t.Errorf("got  %q\nwant %q", got, c.want)
		}
	}
}

// --- the manager on every backend ---

// --- concurrency and restart: the original's end-to-end tests ---
