package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/internal/testbackend"
)

// watcher is a running 'taskflow watch' and its stdout, line by line.
type watcher struct {
	t      *testing.T
	cmd    *exec.Cmd
	lines  chan string
	stderr bytes.Buffer
	done   chan error
}

// startWatch starts the CLI with args on the test's flow space and waits
// until it has subscribed to channels watch channels (1 for a flow, one
// per shard for all flows).
func (e *testEnv) startWatch(channels int, args ...string) *watcher {
	e.t.Helper()
	w := &watcher{t: e.t, lines: make(chan string, 16), done: make(chan error, 1)}
	w.cmd = exec.Command(binPath, append(args, "--redis", e.url, "--prefix", e.prefix)...)
	w.cmd.Env = cliEnv()
	stdout, err := w.cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	w.cmd.Stderr = &w.stderr
	if err := w.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = w.cmd.Process.Kill() })
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
		w.done <- w.cmd.Wait()
	}()
	e.waitWatchers(channels, w)
	return w
}

// waitWatchers waits until n watch channels of the flow space have a
// subscriber (PUBSUB CHANNELS; on a cluster, the sharded channels of
// every master), then a little longer.
func (e *testEnv) waitWatchers(n int, w *watcher) {
	e.t.Helper()
	e.waitChannels(func(got int64) bool { return got >= int64(n) },
		func(got int64) string {
			return fmt.Sprintf("the watcher subscribed to %d channels within 10s, want %d; stderr %s", got, n, w.stderr.String())
		})
	time.Sleep(50 * time.Millisecond)
}

// waitNoWatchers waits until no watch channel of the flow space has a
// subscriber: a watcher that exited may still count until Redis has
// handled its closed connection, and a watcher started then would seem
// subscribed before it is.
func (e *testEnv) waitNoWatchers() {
	e.t.Helper()
	e.waitChannels(func(got int64) bool { return got == 0 },
		func(got int64) string { return fmt.Sprintf("%d watch channels still have a subscriber after 10s", got) })
}

// waitChannels polls the number of the flow space's subscribed watch
// channels until done says so, failing after 10 s.
func (e *testEnv) waitChannels(done func(got int64) bool, failure func(got int64) string) {
	e.t.Helper()
	ctx := context.Background()
	pattern := e.prefix + ":*:watch"
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got atomic.Int64
		var err error
		if cc, ok := e.client.(*redis.ClusterClient); ok {
			err = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
				chs, err := node.PubSubShardChannels(ctx, pattern).Result()
				got.Add(int64(len(chs))) // the masters are asked at once
				return err
			})
		} else {
			var chs []string
			chs, err = e.client.PubSubChannels(ctx, pattern).Result()
			got.Store(int64(len(chs)))
		}
		if err != nil {
			e.t.Fatal(err)
		}
		if done(got.Load()) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatal(failure(got.Load()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// next returns the watcher's next line.
func (w *watcher) next() string {
	w.t.Helper()
	select {
	case line, ok := <-w.lines:
		if !ok {
			w.t.Fatalf("watch ended early; stderr %s", w.stderr.String())
		}
		return line
	case <-time.After(10 * time.Second):
		w.t.Fatalf("no event line within 10s; stderr %s", w.stderr.String())
	}
	return ""
}

// wantExit waits for the watcher to exit with status 0 and no more
// output.
func (w *watcher) wantExit() {
	w.t.Helper()
	select {
	case line, ok := <-w.lines:
		if ok {
			w.t.Fatalf("unexpected line %q", line)
		}
	case <-time.After(10 * time.Second):
		w.t.Fatal("watch did not exit within 10s")
	}
	if err := <-w.done; err != nil {
		w.t.Fatalf("watch exited with %v; stderr %s", err, w.stderr.String())
	}
}

func TestWatchFlow(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		f := e.running(ownerA, "watch me")
		other := e.running(ownerA, "not watched")
		w := e.startWatch(1, "watch", f.ID.String(), "--count", "2", "--json")
		// A mutation of another flow is not in the stream.
		if _, err := e.m.UpdateState(ctx, other.ID, map[string]any{"x": 1}, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.UpdateState(ctx, f.ID, map[string]any{"n": 2}, "step-2"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.SetWaiting(ctx, f.ID, taskflow.WaitManual()); err != nil {
			t.Fatal(err)
		}
		for i, want := range []struct {
			kind taskflow.EventKind
			rev  int64
		}{{taskflow.EventStateUpdated, 2}, {taskflow.EventWaiting, 3}} {
			line := w.next()
			var ev jsonEvent // the id is a number
			if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.FlowEvent == nil {
				t.Fatalf("line %d is not an event: %v\n%s", i+1, err, line)
			}
			if ev.FlowID != f.ID || ev.Kind != want.kind || ev.Revision != want.rev || ev.At.IsZero() || ev.ID == "" {
				t.Fatalf("line %d: %+v, want a %s event of flow %s at revision %d", i+1, ev, want.kind, f.ID, want.rev)
			}
		}
		w.wantExit()
	})
}

func TestWatchAll(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		w := e.startWatch(taskflow.DefaultShards, "watch", "--count", "1")
		f := e.create(ownerB, "a new flow")
		line := w.next()
		if !strings.Contains(line, f.ID.String()) || !strings.Contains(line, " created ") || !strings.Contains(line, "rev 0") {
			t.Fatalf("line %q, want the created event of %s", line, f.ID)
		}
		w.wantExit()
	})
}

func TestWatchStops(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		// SIGINT ends a watch with exit status 0, as SIGTERM does.
		for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
			w := e.startWatch(taskflow.DefaultShards, "watch", "--json")
			f := e.create(ownerA, "seen")
			if line := w.next(); !strings.Contains(line, f.ID.String()) {
				t.Fatalf("line %q", line)
			}
			if err := w.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			w.wantExit()
			e.waitNoWatchers()
		}

		start := time.Now()
		r := e.run("watch", "--for", "300ms").wantCode(t, 0)
		if r.stdout != "" || time.Since(start) < 300*time.Millisecond {
			t.Fatalf("watch --for 300ms: %q after %s", r.stdout, time.Since(start))
		}
		missing := uuid.NewString()
		e.run("watch", missing).wantCode(t, 1).wantOneLineError(t, "flow "+missing+" not found")
	})
}

func TestWatchBannerAndEnd(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		f := e.running(ownerA, "watch me end")
		w := e.startWatch(1, "watch", f.ID.String())
		if _, err := e.m.Finish(ctx, f.ID, nil); err != nil {
			t.Fatal(err)
		}
		if line := w.next(); !strings.Contains(line, " finished ") {
			t.Fatalf("line %q", line)
		}
		w.wantExit() // the flow ended: so does the watch
		if !strings.Contains(w.stderr.String(), "watching flow "+f.ID.String()) ||
			!strings.Contains(w.stderr.String(), "is finished; nothing more to watch") {
			t.Fatalf("stderr %q", w.stderr.String())
		}
		// An ended flow is refused at once.
		e.run("watch", f.ID.String()).wantCode(t, 1).wantOneLineError(t, "is finished and appends no more events")
		// --for takes the same durations as every flag.
		if r := e.run("watch", "--for", "0.000004d").wantCode(t, 0); !strings.Contains(r.stderr, "watching every flow") {
			t.Fatalf("stderr %q", r.stderr)
		}
	})
}

// A watch through a Redis outage says so on stderr: when Redis goes away,
// and when it is back with the gap's times; a watch that ends while
// Redis is still away exits 1.
func TestWatchReportsAnOutage(t *testing.T) {
	srv := testbackend.StartRedisServer(t)
	prefix := testbackend.Prefix("tfcli-outage")
	// The server is the test's own and dies with it: no keys to delete.
	e := &testEnv{t: t, prefix: prefix, client: srv.Client(t)}
	e.m = e.manager(time.Now)
	e.create(ownerA, "exists")
	url := "redis://" + srv.Addr() + "/0"

	start := func(args ...string) (*exec.Cmd, *bufio.Scanner) {
		cmd := exec.Command(binPath, append([]string{"watch", "--redis", url, "--prefix", prefix}, args...)...)
		cmd.Env = cliEnv()
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		sc := bufio.NewScanner(stderr)
		for sc.Scan() && !strings.Contains(sc.Text(), "watching") {
		}
		if sc.Err() != nil || !strings.Contains(sc.Text(), "watching") {
			t.Fatalf("no banner: %q", sc.Text())
		}
		return cmd, sc
	}
	waitFor := func(sc *bufio.Scanner, want string) string {
		t.Helper()
		for sc.Scan() {
			if strings.Contains(sc.Text(), want) {
				return sc.Text()
			}
		}
		t.Fatalf("stderr ended without %q", want)
		return ""
	}

	// Redis goes away and comes back: both told, the watch goes on.
	cmd, sc := start()
	srv.Kill()
	waitFor(sc, "lost Redis")
	srv.Start()
	if line := waitFor(sc, "Redis is back after"); !strings.Contains(line, "were not shown") {
		t.Fatalf("back: %s", line)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("watch after a recovered outage: %v", err)
	}

	// Redis goes away for good: the watch ends with exit status 1.
	cmd, sc = start("--for", "5s")
	srv.Kill()
	waitFor(sc, "lost Redis")
	rest := ""
	for sc.Scan() {
		rest += sc.Text() + "\n"
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(rest, "unreachable since") {
		t.Fatalf("watch that ended in an outage: %v\n%s", err, rest)
	}
}
