package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/taskflow-dev/taskflow"
)

func TestKeys(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		f := e.waiting(ownerA, taskflow.WaitTimer(time.Now().Add(time.Hour)))
		var out keysOut
		e.runJSON(&out, "keys", f.ID.String())
		ids := f.ID.String()
		var tail uint64
		for _, ch := range ids[len(ids)-8:] {
			tail = tail*16 + uint64(strings.IndexRune("0123456789abcdef", ch))
		}
		if out.Shard != int(tail%16) || len(out.Keys) < 3 {
			t.Fatalf("shard %d, by hand %d", out.Shard, tail%16)
		}
		ctx := context.Background()
		for _, k := range out.Keys {
			if k.Type != "hash" && k.Type != "list" && !strings.HasSuffix(k.Key, ":timers") || strings.Contains(k.Key, "<") || strings.HasSuffix(k.Key, ":leases") {
				continue // no steps, no lease: those keys do not exist
			}
			if n := e.client.Exists(ctx, k.Key).Val(); n != 1 {
				t.Fatalf("key %s does not exist", k.Key)
			}
		}
		// The printed redis-cli command reads the flow (when redis-cli is
		// installed and the backend is one it reaches).
		if _, err := exec.LookPath("redis-cli"); err == nil && !strings.Contains(e.url, "addr=") && !strings.Contains(e.url, "127.0.0.1:6379") {
			t.Log("redis-cli check only on the default server")
		} else if err == nil && strings.HasPrefix(e.url, "redis://127.0.0.1:6379") {
			r := e.run("keys", ids).wantCode(t, 0)
			var cmdline string
			for _, line := range strings.Split(r.stdout, "\n") {
				if strings.Contains(line, "HGETALL") && strings.Contains(line, ":flow:") {
					cmdline = strings.TrimSpace(line)
				}
			}
			got, err := exec.Command("sh", "-c", cmdline).CombinedOutput()
			if err != nil || !strings.Contains(string(got), "wait for timer") {
				t.Fatalf("%s: %v\n%s", cmdline, err, got)
			}
		}
	})
}

// Every printed command pastes into bash as it is: no placeholder that
// bash reads as a redirection. A stand-in redis-cli prints its arguments.
func TestKeysCommandsPasteIntoBash(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	var out keysOut
	id := "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
	r := runCLI(t, "keys", id, "--prefix", "pre", "--json").wantCode(t, 0)
	if err := decodeJSON(r.stdout, &out); err != nil {
		t.Fatal(err)
	}
	for _, k := range out.Keys {
		script := `redis-cli() { printf '%s\n' "$@"; }; RUN_ID=run-7; ` + k.Command
		cmd := exec.Command("bash", "-c", script)
		cmd.Dir = t.TempDir()
		got, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", k.Command, err, got)
		}
		want := strings.ReplaceAll(k.Key, "<run-id>", "run-7")
		if !strings.Contains(string(got), want+"\n") {
			t.Errorf("%s passes %q, want the key %s", k.Command, got, want)
		}
	}
}
