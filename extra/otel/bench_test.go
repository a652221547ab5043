package tfotel

import (
	"context"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/taskflow-dev/taskflow/internal/bench"
	"github.com/taskflow-dev/taskflow/internal/testbackend"
)

// BenchmarkHookCost prints the observer's cost per mutation on the real
// Redis: unset (the baseline), a no-op observer, and this package's
// observer with the OpenTelemetry SDK (every span sampled, batched to an
// exporter that drops them; metrics aggregated by a reader nobody
// collects), with ratios to the baseline measured in the same run. Run:
//
//	go test -run '^$' -bench HookCost -benchtime 1x ./extra/otel
func BenchmarkHookCost(b *testing.B) {
	url := testbackend.RedisURL()
	opts, err := redis.ParseURL(url)
	if err != nil {
		b.Fatal(err)
	}
	opts.PoolSize = 4
	c := redis.NewClient(opts)
	defer c.Close()
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		b.Skipf("Redis unreachable at %s: %v", url, err)
	}
	prefix := testbackend.Prefix("tfotel")
	defer func() { _ = testbackend.DeleteKeys(ctx, c, prefix) }()
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	defer func() { _ = tp.Shutdown(ctx) }()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer func() { _ = mp.Shutdown(ctx) }()
	obs, err := NewObserver(WithTracerProvider(tp), WithMeterProvider(mp))
	if err != nil {
		b.Fatal(err)
	}
	rounds, ops := 9, 2000
	if testing.Short() {
		rounds, ops = 2, 100
	}
	b.ResetTimer()
	for range b.N {
		if err := bench.HookCost(ctx, c, prefix, []bench.HookVariant{
			{Name: "unset", Observer: nil},
			{Name: "no-op", Observer: bench.NoopObserver()},
			{Name: "opentelemetry", Observer: obs},
		}, rounds, ops, os.Stdout); err != nil {
			b.Fatal(err)
		}
	}
}
