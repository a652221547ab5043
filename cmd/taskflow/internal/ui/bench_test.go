package ui

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/internal/bench"
	"github.com/taskflow-dev/taskflow/internal/testbackend"
)

// BenchmarkFirstPage renders the first page of waiting flows of a
// 1,000-flow space and of a 1,000,000-flow space (TASKFLOW_UI_BENCH_LARGE
// changes the size) on a private redis-server, alternating the two in
// every iteration, and reports each one's median and their ratio:
//
//	go test -run '^$' -bench FirstPage -benchtime 200x ./cmd/taskflow/internal/ui/
//
// Filling a million flows takes about a minute and ~1.5 GB of the
// private server's memory.
func BenchmarkFirstPage(b *testing.B) {
	_, err := exec.LookPath("redis-server")
	if err != nil {
		b.Skip("redis-server not on PATH")
	}
	large := 1_000_000
	if v := os.Getenv("TASKFLOW_UI_BENCH_LARGE"); v != "" {
		if large, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	c := privateRedis(b)
	ctx := context.Background()
	sizes := []int{1000, large}
	handlers := make([]http.Handler, len(sizes))
	for i, n := range sizes {
		prefix := fmt.Sprintf("uibench-%d", n)
		t0 := time.Now()
		if err := bench.FillWaiting(ctx, c, prefix, n); err != nil {
			b.Fatal(err)
		}
		b.Logf("filled %d flows in %s", n, time.Since(t0).Round(time.Millisecond))
		store, err := taskflow.NewRedisStore(c, taskflow.WithPrefix(prefix))
		if err != nil {
			b.Fatal(err)
		}
		s, err := New(taskflow.NewManager(store), Config{})
		if err != nil {
			b.Fatal(err)
		}
		handlers[i] = s
	}
	page := func(h http.Handler) time.Duration {
		req := httptest.NewRequest(http.MethodGet, "/flows?status=waiting", nil)
		rec := httptest.NewRecorder()
		t0 := time.Now()
		h.ServeHTTP(rec, req)
		d := time.Since(t0)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body.String())
		}
		return d
	}
	for _, h := range handlers { // warm up: scripts loaded, layout read
		page(h)
	}
	times := make([][]time.Duration, len(sizes))
	b.ResetTimer()
	for b.Loop() {
		for i, h := range handlers {
			times[i] = append(times[i], page(h))
		}
	}
	b.StopTimer()
	med := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[len(s)/2]
	}
	small, big := med(times[0]), med(times[1])
	b.ReportMetric(float64(small.Microseconds()), "µs/page-1k")
	b.ReportMetric(float64(big.Microseconds()), fmt.Sprintf("µs/page-%d", large))
	b.ReportMetric(float64(big)/float64(small), "ratio")
	b.Logf("first page of waiting flows, median over %d: %d flows %s, %d flows %s, ratio %.2f",
		len(times[0]), sizes[0], small, large, big, float64(big)/float64(small))
}

// privateRedis starts a redis-server on a free loopback port in a temp
// dir and stops it when the benchmark ends.
func privateRedis(b *testing.B) *redis.Client {
	b.Helper()
	srv := testbackend.StartRedisServer(b)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// BenchmarkLiveStreams opens 2,000 live streams of the dashboard
// (TASKFLOW_UI_BENCH_STREAMS changes the number) over 64 flows of every
// shard on a private redis-server, and reports the Redis connections
// they hold and the process's heap:
//
//	go test -run '^$' -bench LiveStreams -benchtime 1x ./cmd/taskflow/internal/ui/
func BenchmarkLiveStreams(b *testing.B) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		b.Skip("redis-server not on PATH")
	}
	n := 2000
	if v := os.Getenv("TASKFLOW_UI_BENCH_STREAMS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		var ms0, ms1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms0)
		before, during := liveStreams(b, n)
		runtime.GC()
		runtime.ReadMemStats(&ms1)
		b.ReportMetric(float64(during-before), "redis-conns")
		b.ReportMetric(float64(int64(ms1.HeapInuse)-int64(ms0.HeapInuse))/(1<<20), "heap-MiB")
		b.Logf("%d live streams: Redis connections %d -> %d; heap in use +%.1f MiB", n, before, during,
			float64(int64(ms1.HeapInuse)-int64(ms0.HeapInuse))/(1<<20))
	}
}
