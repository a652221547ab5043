package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

func TestResume(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		w := e.waiting(ownerA, taskflow.WaitManual())
		r := e.run("resume", w.ID.String()).wantCode(t, 0)
		if !strings.Contains(r.stdout, "resumed") {
			t.Fatalf("stdout %q", r.stdout)
		}
		if got := e.get(w.ID); got.Status != taskflow.StatusRunning || got.Wait != nil {
			t.Fatalf("after resume: %+v", got)
		}
		r = e.run("resume", w.ID.String()).wantCode(t, 1)
		r.wantOneLineError(t, fmt.Sprintf("flow %s is running, not waiting; nothing to resume", w.ID))
		if r.stderr != fmt.Sprintf("taskflow: flow %s is running, not waiting; nothing to resume\n", w.ID) {
			t.Fatalf("stderr %q", r.stderr)
		}

		x := e.waiting(ownerA, taskflow.WaitTimer(time.Now().Add(time.Hour)))
		var f taskflow.Flow
		e.runJSON(&f, "resume", x.ID.String())
		if f.Status != taskflow.StatusRunning || f.Revision != x.Revision+1 {
			t.Fatalf("resumed flow: %+v", f)
		}

		c := e.waiting(ownerA, taskflow.WaitManual())
		if _, err := e.m.RequestCancel(context.Background(), c.ID); err != nil {
			t.Fatal(err)
		}
		e.run("resume", c.ID.String()).wantCode(t, 1).wantOneLineError(t, "cancel request pending")

		created := e.create(ownerA, "not started")
		e.run("resume", created.ID.String()).wantCode(t, 1).wantOneLineError(t, "is created, not waiting")
		missing := uuid.NewString()
		e.run("resume", missing).wantCode(t, 1).wantOneLineError(t, "flow "+missing+" not found")
	})
}
