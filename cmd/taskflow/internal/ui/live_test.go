package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/internal/testbackend"
)

// openStream starts a live stream and returns once the dashboard has
// subscribed (": watching"), or the status it answered instead.
func openStream(ctx context.Context, c *http.Client, u string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.Contains(line, "watching") {
		resp.Body.Close()
		return 0, fmt.Errorf("stream start %q: %v", line, err)
	}
	context.AfterFunc(ctx, func() { resp.Body.Close() })
	return http.StatusOK, nil
}

// TestLiveStreamsAreBounded: a live stream for an id that is no flow is
// refused (404, no subscription), and beyond MaxStreams one more is 503.
func TestLiveStreamsAreBounded(t *testing.T) {
	fx := newFixture(t, Config{MaxStreams: 3})
	f := fx.create(t, "g")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := fx.srv.Client()
	if code, err := openStream(ctx, c, fx.srv.URL+"/flows/"+uuid.NewString()+"/live"); err != nil || code != http.StatusNotFound {
		t.Fatalf("a stream of no flow: %d %v, want 404", code, err)
	}
	for i := range 3 {
		if code, err := openStream(ctx, c, fx.srv.URL+"/flows/"+f.ID.String()+"/live"); err != nil || code != http.StatusOK {
			t.Fatalf("stream %d: %d %v", i+1, code, err)
		}
	}
	if code, err := openStream(ctx, c, fx.srv.URL+"/flows/"+f.ID.String()+"/live"); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("stream 4 of at most 3: %d %v, want 503", code, err)
	}
}

// connectedClients is INFO's connected_clients of a server.
func connectedClients(t testing.TB, c *redis.Client) int {
	t.Helper()
	info, err := c.Info(context.Background(), "clients").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "connected_clients:"); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no connected_clients in %q", info)
	return 0
}

// liveStreams opens n live streams of the dashboard over flows spread
// over every shard, on a private redis-server, and returns how many
// connections the server has then, and had before.
func liveStreams(t testing.TB, n int) (before, during int) {
	srv := testbackend.StartRedisServer(t)
	c := srv.Client(t)
	store, err := taskflow.NewRedisStore(c, taskflow.WithPrefix("uilive"))
	if err != nil {
		t.Fatal(err)
	}
	m := taskflow.NewManager(store)
	t.Cleanup(func() { _ = m.Close() })
	s, err := New(m, Config{MaxStreams: n})
	if err != nil {
		t.Fatal(err)
	}
	hs := newServer(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var ids []uuid.UUID
	for range 64 {
		f, err := m.CreateManaged(ctx, taskflow.CreateManagedInput{ControllerID: "ops/live", Goal: "g", OwnerSessionKey: "agent:a:session:s"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, f.ID)
	}
	before = connectedClients(t, c)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1}}
	for i := range n {
		code, err := openStream(ctx, client, hs.URL+"/flows/"+ids[i%len(ids)].String()+"/live")
		if err != nil || code != http.StatusOK {
			t.Fatalf("stream %d: %d %v", i+1, code, err)
		}
	}
	return before, connectedClients(t, c)
}

// TestLiveStreamsShareSubscriptions: 200 live streams over flows of all
// 16 shards hold at most one Redis connection per shard between them
// (before: one each, 200 more connections).
func TestLiveStreamsShareSubscriptions(t *testing.T) {
	const n = 200
	before, during := liveStreams(t, n)
	if during-before > 16 {
		t.Fatalf("%d live streams hold %d Redis connections (from %d to %d), want at most 16 (one per shard)", n, during-before, before, during)
	}
	t.Logf("%d live streams: Redis connections %d -> %d", n, before, during)
}

// TestLiveEventsAreNotHTMLEscaped: the event stream is JSON a program
// reads (text/event-stream, never rendered as HTML), so '<', '>' and '&'
// in an event come as written, as in the stored JSON and the CLI's --json,
// not as \u003c, \u003e, \u0026.
func TestLiveEventsAreNotHTMLEscaped(t *testing.T) {
	fx := newFixture(t, Config{})
	f := fx.create(t, "g")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fx.srv.URL+"/flows/"+f.ID.String()+"/live", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); err != nil || !strings.Contains(line, "watching") {
		t.Fatalf("stream start %q: %v", line, err)
	}
	const reason = `a <b> & c`
	if _, err := fx.m.Cancel(ctx, f.ID, taskflow.WithAudit("ops <x> & y", reason)); err != nil {
		t.Fatal(err)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended before the cancel event: %v", err)
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || !strings.Contains(data, `"Kind":"cancelled"`) {
			continue
		}
		if strings.Contains(data, `\u003c`) || strings.Contains(data, `\u003e`) || strings.Contains(data, `\u0026`) {
			t.Fatalf("event HTML-escaped: %s", data)
		}
		var ev struct{ Payload string }
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("event %s: %v", data, err)
		}
		if !strings.Contains(ev.Payload, reason) || !strings.Contains(data, "ops <x> & y") {
			t.Fatalf("event %s lacks the audit note as written", data)
		}
		return
	}
}
