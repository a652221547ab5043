package taskflow

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

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
}
