package testbackend

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"testing"
)

func TestPrefix(t *testing.T) {
	p, q := Prefix("tftest"), Prefix("tftest")
	if !regexp.MustCompile(`^tftest-[0-9a-f]{12}$`).MatchString(p) || p == q {
		t.Fatalf("Prefix: %q and %q, want two different tftest-<12 hex>", p, q)
	}
}

func TestClusterURL(t *testing.T) {
	for _, c := range []struct{ addrs, want string }{
		{"", ""},
		{"127.0.0.1:7101", "redis://127.0.0.1:7101?addr=127.0.0.1%3A7101"},
		{" 127.0.0.1:7101, 127.0.0.1:7102,", "redis://127.0.0.1:7101?addr=127.0.0.1%3A7102"},
	} {
		t.Setenv("TASKFLOW_TEST_CLUSTER_ADDRS", c.addrs)
		if got := ClusterURL(); got != c.want {
			t.Errorf("ClusterURL with %q = %q, want %q", c.addrs, got, c.want)
		}
	}
}

// TestDeleteKeys deletes one prefix's keys, in every slot of a cluster,
// and leaves a neighbour's alone.
func TestDeleteKeys(t *testing.T) {
	Each(t, func(t *testing.T, b Backend) {
		ctx := context.Background()
		c := b.Client(t)
		mine, other := Prefix("tfharness"), Prefix("tfharness")
		t.Cleanup(func() { _ = DeleteKeys(ctx, c, other) })
		var want []string
		for i := range 50 {
			for _, p := range []string{mine, other} {
				k := fmt.Sprintf("%s:{%d}:k", p, i)
				if err := c.Set(ctx, k, "v", 0).Err(); err != nil {
					t.Fatal(err)
				}
				if p == mine {
					want = append(want, k)
				}
			}
		}
		got, err := Keys(ctx, c, mine+":*")
		slices.Sort(want)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("Keys = %d keys, %v; want %d", len(got), err, len(want))
		}
		if err := DeleteKeys(ctx, c, mine); err != nil {
			t.Fatal(err)
		}
		if got, err := Keys(ctx, c, mine+":*"); err != nil || len(got) != 0 {
			t.Fatalf("after DeleteKeys: %v, %v", got, err)
		}
		if got, err := Keys(ctx, c, other+":*"); err != nil || len(got) != 50 {
			t.Fatalf("the other prefix: %d keys, %v; want 50", len(got), err)
		}
	})
}

// TestServerRestart kills a private server and starts it again on the
// same port and dir: what the AOF holds survives.
func TestServerRestart(t *testing.T) {
	srv := StartRedisServer(t, "--appendonly", "yes", "--appendfsync", "always")
	ctx := context.Background()
	if err := srv.Client(t).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	port := srv.Port
	srv.Kill()
	if err := srv.Client(t).Ping(ctx).Err(); err == nil {
		t.Fatal("the killed server still answers")
	}
	srv.Start()
	if srv.Port != port {
		t.Fatalf("restarted on port %d, want %d", srv.Port, port)
	}
	if v, err := srv.Client(t).Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("after the restart: %q, %v", v, err)
	}
}
