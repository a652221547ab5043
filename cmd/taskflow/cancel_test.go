package main

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

func TestCancel(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		a := e.running(ownerA, "cancel me")
		r := e.run("cancel", a.ID.String()).wantCode(t, 0)
		if !strings.Contains(r.stdout, "cancelled") {
			t.Fatalf("stdout %q", r.stdout)
		}
		if got := e.get(a.ID); got.Status != taskflow.StatusCancelled {
			t.Fatalf("status %s", got.Status)
		}
		e.run("cancel", a.ID.String()).wantCode(t, 0)

		b := e.waiting(ownerA, taskflow.WaitExternalEvent("t", "c"))
		var f taskflow.Flow
		e.runJSON(&f, "cancel", b.ID.String())
		if f.ID != b.ID || f.Status != taskflow.StatusCancelled || f.Wait != nil || f.Revision != b.Revision+1 {
			t.Fatalf("cancelled flow: %+v", f)
		}

		c := e.running(ownerA, "done")
		if _, err := e.m.Finish(context.Background(), c.ID, nil); err != nil {
			t.Fatal(err)
		}
		e.run("cancel", c.ID.String()).wantCode(t, 1).wantOneLineError(t, "is already finished; nothing to cancel")
		missing := uuid.NewString()
		e.run("cancel", missing).wantCode(t, 1).wantOneLineError(t, "flow "+missing+" not found")
	})
}
