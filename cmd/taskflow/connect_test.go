package main

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestUnreachableRedis(t *testing.T) {
	for _, args := range [][]string{
		{"list"}, {"show", uuid.NewString()}, {"tick"}, {"prune", "--older-than", "7d"}, {"watch"},
	} {
		r := runCLI(t, append(args, "--redis", "redis://127.0.0.1:1")...).wantCode(t, 1)
		r.wantOneLineError(t, "cannot reach Redis at 127.0.0.1:1")
	}
	r := runCLI(t, "fsck", "--redis", "redis://127.0.0.1:1?addr=127.0.0.1:2").wantCode(t, 1)
	r.wantOneLineError(t, "cannot reach Redis Cluster at 127.0.0.1:1,127.0.0.1:2")
}

func TestMistypedPrefix(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		e.create(ownerA, "exists")
		typo := e.prefix + "x"
		t.Cleanup(func() {
			for _, k := range e.scanKeys(typo + ":*") {
				_ = e.client.Del(context.Background(), k).Err()
			}
		})
		for _, args := range [][]string{{"list"}, {"fsck"}, {"show", uuid.NewString()}, {"watch", uuid.NewString()}, {"prune", "--older-than", "7d"}} {
			r := runCLI(t, append(args, "--redis", e.url, "--prefix", typo)...).wantCode(t, 1)
			r.wantOneLineError(t, `no flow space "`+typo+`" at `)
			if !strings.Contains(r.stderr, e.prefix) || !strings.Contains(r.stderr, "did you mean --prefix "+e.prefix) {
				t.Fatalf("%v: the existing space is not named: %s", args, r.stderr)
			}
		}
		// Nothing was written under the typo.
		if keys := e.scanKeys(typo + ":*"); len(keys) != 0 {
			t.Fatalf("keys written under the mistyped prefix: %v", keys)
		}
		// The engine, and a watch of every flow, serve a space not created
		// yet, with a warning.
		for _, args := range [][]string{{"tick"}, {"watch", "--for", "300ms"}} {
			r := runCLI(t, append(args, "--redis", e.url, "--prefix", typo)...).wantCode(t, 0)
			if !strings.Contains(r.stderr, "warning: no flow space") || !strings.Contains(r.stderr, "did you mean --prefix "+e.prefix) {
				t.Fatalf("%v on a new space: %q", args, r.stderr)
			}
			for _, k := range e.scanKeys(typo + ":*") {
				_ = e.client.Del(context.Background(), k).Err()
			}
		}
		// An empty page of an existing space names it.
		if r := e.run("list", "--status", "finished").wantCode(t, 0); !strings.HasPrefix(r.stdout, `no flows match in flow space "`+e.prefix+`" at `) {
			t.Fatalf("empty list: %q", r.stdout)
		}
		// fsck names what it checked.
		r := e.run("fsck").wantCode(t, 0)
		if !strings.Contains(r.stdout, `flow space "`+e.prefix+`" at `) {
			t.Fatalf("fsck: %q", r.stdout)
		}
	})
}
