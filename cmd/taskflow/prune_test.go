package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

func TestPrune(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		old := e.manager(func() time.Time { return time.Now().Add(-8 * 24 * time.Hour) })
		var oldIDs []uuid.UUID
		for i := 0; i < 3; i++ {
			f, err := old.CreateManaged(ctx, taskflow.CreateManagedInput{ControllerID: "c", Goal: "old", OwnerSessionKey: ownerA})
			if err != nil {
				t.Fatal(err)
			}
			if i < 2 { // two old terminal flows, one old created flow
				if _, err := old.Cancel(ctx, f.ID); err != nil {
					t.Fatal(err)
				}
			}
			oldIDs = append(oldIDs, f.ID)
		}
		recent := e.running(ownerA, "recent")
		if _, err := e.m.Finish(ctx, recent.ID, nil); err != nil {
			t.Fatal(err)
		}

		r := e.run("prune", "--older-than", "7d").wantCode(t, 0)
		if !strings.HasPrefix(r.stdout, "pruned 2 flows (finished, failed or cancelled more than 7d ago)") {
			t.Fatalf("stdout %q", r.stdout)
		}
		for i, id := range oldIDs {
			_, err := e.m.Get(ctx, id)
			if gone := err != nil; gone != (i < 2) {
				t.Fatalf("old flow %d: err %v", i, err)
			}
		}
		e.get(recent.ID)

		var out map[string]int
		e.runJSON(&out, "prune", "--older-than", "36h")
		if n, ok := out["pruned"]; !ok || n != 0 {
			t.Fatalf("json: %v", out)
		}
		e.runJSON(&out, "prune", "--older-than", "0s", "--force")
		if out["pruned"] != 1 {
			t.Fatalf("json: %v", out)
		}
	})
}

func TestPruneDryRun(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		old := e.manager(func() time.Time { return time.Now().Add(-8 * 24 * time.Hour) })
		f, err := old.CreateManaged(ctx, taskflow.CreateManagedInput{ControllerID: "c", Goal: "old", OwnerSessionKey: ownerA})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := old.Cancel(ctx, f.ID); err != nil {
			t.Fatal(err)
		}
		recent := e.running(ownerA, "recent")
		if _, err := e.m.Finish(ctx, recent.ID, nil); err != nil {
			t.Fatal(err)
		}
		r := e.run("prune", "--older-than", "7d", "--dry-run").wantCode(t, 0)
		if !strings.HasPrefix(r.stdout, "dry run: would prune 1 flow ") || !strings.Contains(r.stdout, f.ID.String()) {
			t.Fatalf("dry run:\n%s", r.stdout)
		}
		var out dryRun
		e.runJSON(&out, "prune", "--older-than", "0s", "--dry-run")
		if out.WouldPrune != 2 || len(out.IDs) != 2 {
			t.Fatalf("dry run json: %+v", out)
		}
		e.get(f.ID) // nothing deleted
		e.get(recent.ID)
	})
}
