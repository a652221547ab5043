package tfotel_test

// The README's OpenTelemetry snippet, the whole body of an example
// (compiled, not run); TestReadmeGoSnippets in the root module checks the
// README against it.

import (
	"log"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskflow-dev/taskflow"
	tfotel "github.com/taskflow-dev/taskflow/extra/otel"
)

var (
	tp     trace.TracerProvider
	mp     metric.MeterProvider
	client redis.UniversalClient
)

func Example_readmeOpenTelemetry() {
	obs, err := tfotel.NewObserver(tfotel.WithTracerProvider(tp), tfotel.WithMeterProvider(mp))
	if err != nil {
		log.Fatal(err)
	}
	store, err := taskflow.NewRedisStore(client, taskflow.WithObserver(obs))
	if err != nil {
		log.Fatal(err)
	}
	m := taskflow.NewManager(store)
	reg, err := tfotel.RegisterStats(mp, m.Stats) // the gauges below, from Stats at each collection
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Unregister()
}
