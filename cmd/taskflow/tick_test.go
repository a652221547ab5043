package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/taskflow-dev/taskflow"
)

func TestTick(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		seed := func() (due, future, cancel *taskflow.Flow) {
			due = e.waiting(ownerA, taskflow.WaitTimer(time.Now().Add(-time.Second)))
			future = e.waiting(ownerA, taskflow.WaitTimer(time.Now().Add(time.Hour)))
			cancel = e.waiting(ownerA, taskflow.WaitManual())
			if _, err := e.m.RequestCancel(context.Background(), cancel.ID); err != nil {
				t.Fatal(err)
			}
			return
		}
		due, _, cancel := seed()
		r := e.run("tick").wantCode(t, 0)
		for _, want := range []string{"scanned         3", "resumed         1", "cancelled       1", "still_waiting   1", "leases_expired  0", "relayed         0", "errors          0"} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("tick report lacks %q:\n%s", want, r.stdout)
			}
		}
		if e.get(due.ID).Status != taskflow.StatusRunning || e.get(cancel.ID).Status != taskflow.StatusCancelled {
			t.Fatal("tick did not resume and cancel")
		}

		seed()
		var rep map[string]int
		e.runJSON(&rep, "tick")
		want := map[string]int{"scanned": 4, "resumed": 1, "cancelled": 1, "still_waiting": 2, "errors": 0}
		for k, v := range want {
			if got, ok := rep[k]; !ok || got != v {
				t.Fatalf("json report %v, want %v", rep, want)
			}
		}
	})
}

func TestTickShowsLeasesExpired(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		e.running(ownerA, "stalls")
		if _, _, err := e.m.Claim(context.Background(), "test/cli", "w", minLease, taskflow.WithClaimWait(time.Second)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * minLease)
		r := e.run("tick").wantCode(t, 0)
		if !strings.Contains(r.stdout, "leases_expired  1") {
			t.Fatalf("tick:\n%s", r.stdout)
		}
	})
}
