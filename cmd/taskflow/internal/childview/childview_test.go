package childview

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/internal/testbackend"
)

// eachBackend runs f with a manager on a fresh flow space of every
// backend of internal/testbackend.
func eachBackend(t *testing.T, f func(t *testing.T, m *taskflow.Manager)) {
	testbackend.Each(t, func(t *testing.T, b testbackend.Backend) {
		client := b.Client(t)
		prefix := testbackend.Prefix("tfchildview-test")
		testbackend.CleanupKeys(t, client, prefix)
		store, err := taskflow.NewRedisStore(client, taskflow.WithPrefix(prefix))
		if err != nil {
			t.Fatal(err)
		}
		m := taskflow.NewManager(store)
		t.Cleanup(func() { _ = m.Close() })
		f(t, m)
	})
}

// parentWith starts a running parent and n children keyed k0…
func parentWith(t *testing.T, m *taskflow.Manager, n int) (*taskflow.Flow, []*taskflow.Flow) {
	t.Helper()
	ctx := context.Background()
	p, err := m.CreateManaged(ctx, taskflow.CreateManagedInput{ControllerID: "ops/parent", Goal: "fan out", OwnerSessionKey: "agent:a:session:s"})
	if err != nil {
		t.Fatal(err)
	}
	if p, err = m.StartRunning(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		return p, nil
	}
	ins := make([]taskflow.ChildInput, n)
	for i := range ins {
		ins[i] = taskflow.ChildInput{Key: fmt.Sprintf("k%d", i), Flow: taskflow.CreateManagedInput{
			ControllerID: "ops/child", Goal: fmt.Sprintf("part %d", i), OwnerSessionKey: "agent:a:session:s",
		}}
	}
	kids, err := m.StartChildren(ctx, p.ID, ins)
	if err != nil {
		t.Fatal(err)
	}
	return p, kids
}

func TestProgress(t *testing.T) {
	eachBackend(t, func(t *testing.T, m *taskflow.Manager) {
		ctx := context.Background()
		p, kids := parentWith(t, m, 5)
		if j, err := Progress(ctx, m, p); j != nil || err != nil {
			t.Fatalf("a running parent: %+v %v, want no join", j, err)
		}
		deadline := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
		waiting, err := m.SetWaiting(ctx, p.ID, taskflow.WaitChildren(taskflow.Join{Need: 3, Deadline: deadline}))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Finish(ctx, kids[0].ID, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Fail(ctx, kids[1].ID, "bad input"); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Cancel(ctx, kids[3].ID); err != nil {
			t.Fatal(err)
		}
		// Pages of two: three pages, the counts the same.
		for _, size := range []int{countPage, 2} {
			j, err := progress(ctx, m, waiting, size)
			if err != nil {
				t.Fatal(err)
			}
			want := Join{Need: 3, Deadline: deadline, Total: 5, Finished: 1, Failed: 1, Cancelled: 1, Pending: 2}
			if j == nil || *j != want || j.NeedText() != "3 of 5" {
				t.Fatalf("pages of %d: %+v, want %+v", size, j, want)
			}
		}

		// A wait on anything else is no join.
		other, _ := parentWith(t, m, 0)
		if other, err = m.SetWaiting(ctx, other.ID, taskflow.WaitTimer(deadline)); err != nil {
			t.Fatal(err)
		}
		if j, err := Progress(ctx, m, other); j != nil || err != nil {
			t.Fatalf("a timer wait: %+v %v, want no join", j, err)
		}
	})
}

func TestNeedText(t *testing.T) {
	if got := (&Join{Total: 4}).NeedText(); got != "all 4" {
		t.Fatalf("need 0: %q", got)
	}
	if got := (&Join{Need: 1, Total: 4}).NeedText(); got != "1 of 4" {
		t.Fatalf("need 1: %q", got)
	}
}
