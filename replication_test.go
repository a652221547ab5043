package taskflow

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// waitReplicaUp waits until the replica's link to its master is up.
func waitReplicaUp(t *testing.T, c *redis.Client) {
	t.Helper()
	for i := 0; i < 200; i++ {
		info, _ := c.Info(context.Background(), "replication").Result()
		if strings.Contains(info, "master_link_status:up") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("replica never synced")
}

// TestReplicaAcksSurviveACrashPromotion: with WithReplicaAcks(1, ...),
// every acknowledged mutation is on the replica, so killing the master
// and promoting the replica loses none; with the replica gone, a
// mutation reports ErrNotReplicated and is applied.
func TestReplicaAcksSurviveACrashPromotion(t *testing.T) {
	master := startRedisServer(t)
	replica := startRedisServer(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.port))
	rc := replica.client(t)
	waitReplicaUp(t, rc)
	ctx := context.Background()
	store, err := NewRedisStore(master.client(t), WithPrefix("repl"), WithReplicaAcks(1, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(store)
	f := must(t, try(m.CreateMirrored(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})))
	for i := 0; i < 40; i++ {
		f = must(t, try(m.UpdateState(ctx, f.ID, map[string]int{"i": i}, "")))
	}
	// Steps and leases are writes too: each is acknowledged replicated.
	must(t, try(m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "observed", Status: StepRunning})))
	if err := store.InsertStep(ctx, &FlowStep{ID: uuid.New(), FlowID: f.ID, RunID: "inserted", Runtime: RuntimeManaged, Status: StepPending}); err != nil {
		t.Fatal(err)
	}
	_, l, err := m.Claim(ctx, "c", "w", time.Minute)
	if err != nil || l == nil {
		t.Fatalf("claim: %v %v", l, err)
	}
	l = must(t, try(m.Extend(ctx, l, 2*time.Minute)))
	if err := m.Release(ctx, l); err != nil {
		t.Fatal(err)
	}
	f = must(t, try(m.Finish(ctx, f.ID, nil)))
	master.kill() // a crash: no shutdown, no last sync
	if err := rc.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	promoted, err := NewRedisStore(rc, WithPrefix("repl"))
	if err != nil {
		t.Fatal(err)
	}
	got := must(t, try(NewManager(promoted).Get(ctx, f.ID)))
	if got.Revision != f.Revision || got.Status != StatusFinished {
		t.Fatalf("after promotion: rev %d %s, acknowledged rev %d %s", got.Revision, got.Status, f.Revision, f.Status)
	}
	for _, run := range []string{"observed", "inserted"} {
		if _, err := promoted.FindStepByRunID(ctx, f.ID, run); err != nil {
			t.Fatalf("step %s after promotion: %v", run, err)
		}
	}
	// The promoted server has no replica: a mutation applies but says
	// it is not confirmed replicated.
	waiting, err := NewRedisStore(rc, WithPrefix("repl"), WithReplicaAcks(1, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	wm := NewManager(waiting)
	g := must(t, try(NewManager(promoted).CreateMirrored(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})))
	_, err = wm.UpdateState(ctx, g.ID, map[string]int{"x": 1}, "")
	var nre *NotReplicatedError
	if !errors.Is(err, ErrNotReplicated) || !errors.As(err, &nre) || nre.Acked != 0 || nre.Wanted != 1 {
		t.Fatalf("update without a replica: %v", err)
	}
	if after := must(t, try(wm.Get(ctx, g.ID))); after.Revision != g.Revision+1 {
		t.Fatalf("the unconfirmed update did not apply: rev %d", after.Revision)
	}
	// Every other write reports the same: steps, and a lease's calls.
	_, _, err = NewManager(promoted).Claim(ctx, "c", "w", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wm.RecordStepObservation(ctx, StepObservation{FlowID: g.ID, RunID: "r", Status: StepRunning}); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("step observation without a replica: %v", err)
	}
	if err := waiting.InsertStep(ctx, &FlowStep{ID: uuid.New(), FlowID: g.ID, RunID: "i", Runtime: RuntimeManaged, Status: StepPending}); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("insert step without a replica: %v", err)
	}
	h := must(t, try(NewManager(promoted).CreateMirrored(ctx, CreateManagedInput{ControllerID: "d", Goal: "g", OwnerSessionKey: "o"})))
	_, hl, err := NewManager(promoted).Claim(ctx, "d", "w", time.Minute)
	if err != nil || hl == nil || hl.FlowID != h.ID {
		t.Fatalf("claim: %v %v", hl, err)
	}
	if _, err := wm.Extend(ctx, hl, 2*time.Minute); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("extend without a replica: %v", err)
	}
	if err := wm.Release(ctx, hl); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("release without a replica: %v", err)
	}
}
