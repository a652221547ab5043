package bench

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// miniTarget is a children target on an embedded miniredis: no INFO
// commandstats there, so no Redis time.
func miniTarget(t *testing.T) (childrenTarget, *miniredis.Miniredis) {
	t.Helper()
	mr := miniredis.RunT(t)
	return childrenTarget{newClient: func() *redis.Client { return redis.NewClient(&redis.Options{Addr: mr.Addr()}) }}, mr
}

// TestChildrenPassesOnMiniredis runs each pass of the children suite,
// tiny, on miniredis: the spawn is a few round trips where the flows by
// hand take one each, a child's finish costs more round trips than a
// plain one (its delivery), and every fan-out flow ends finished (the
// pass checks it) both ways.
func TestChildrenPassesOnMiniredis(t *testing.T) {
	tgt, mr := miniTarget(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 30
	sp, err := spawnChildren(ctx, tgt, "tfbench-test-a", n, false)
	if err != nil {
		t.Fatal(err)
	}
	byHand, err := spawnChildren(ctx, tgt, "tfbench-test-b", n, true)
	if err != nil {
		t.Fatal(err)
	}
	if sp.trips < 3 || sp.trips > 6 || byHand.trips != n {
		t.Fatalf("spawn of %d: %d round trips with StartChildren, %d by hand; want 3 to 6, and %d", n, sp.trips, byHand.trips, n)
	}
	if sp.usec != 0 {
		t.Fatalf("Redis time %d us measured without commandstats", sp.usec)
	}
	j, err := joinChildren(ctx, tgt, "tfbench-test-c", n, 4, false)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := joinChildren(ctx, tgt, "tfbench-test-d", n, 4, true)
	if err != nil {
		t.Fatal(err)
	}
	if plain.trips != n || j.trips <= plain.trips {
		t.Fatalf("finishing %d: %d round trips as children, %d plain; want more than %d, and %d", n, j.trips, plain.trips, n, n)
	}
	spec := fanOutSpec{parents: 6, kids: 4, procs: 2, parentLoops: 1, childLoops: 3}
	for _, hand := range []bool{false, true} {
		res, err := fanOut(ctx, tgt, fmt.Sprintf("tfbench-test-e-%v", hand), spec, hand)
		if err != nil {
			t.Fatalf("fan-out (by hand %v): %v", hand, err)
		}
		if res.flows != 30 || res.secs <= 0 || res.trips == 0 {
			t.Fatalf("fan-out (by hand %v): %+v", hand, res)
		}
	}
	if len(mr.Keys()) == 0 {
		t.Fatal("the passes wrote nothing")
	}
}

// TestChildrenSuiteOnMiniredis runs the suite's rounds and report on
// miniredis, tiny: every row but Redis time, and no key left.
func TestChildrenSuiteOnMiniredis(t *testing.T) {
	tgt, mr := miniTarget(t)
	c := tgt.newClient()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	r := &runner{cfg: Config{Rounds: 2}, sz: sizes{spawnChildren: 20, fanParents: 4, fanKids: 3}, out: &out, runID: randHex(4)}
	err := r.childrenOn(ctx, tgt, func(ctx context.Context, prefix string) error {
		_, err := deletePrefix(ctx, c, prefix)
		return err
	})
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"spawn 20: round trips in all", "join: round trips per child's Finish",
		"fan-out 4x3: flows/s", "ratio children/by hand"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "Redis time per child") {
		t.Error("a Redis time row without commandstats")
	}
	if !regexp.MustCompile(`spawn 20: round trips in all +\d +20 +0\.\d\d\d?x`).MatchString(out.String()) {
		t.Error("the spawn row is not a few round trips against 20")
	}
	if keys := mr.Keys(); len(keys) != 0 {
		t.Errorf("the suite left %d keys, e.g. %q", len(keys), keys[0])
	}
}

// TestChildrenSuiteQuick runs the suite through Run, quick and one
// round, on a private server: the Redis time rows too.
func TestChildrenSuiteQuick(t *testing.T) {
	server, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("no redis-server binary for a private server")
	}
	if server, err = filepath.Abs(server); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err = Run(ctx, Config{Suites: []string{SuiteChildren}, Rounds: 1, Quick: true, RedisServer: server}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"=== children", "spawn 200: round trips in all", "spawn: Redis time per child (us)",
		"join: Redis time per child result (us)", "fan-out 20x10: flows/s", "fan-out: Redis time per parent"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
