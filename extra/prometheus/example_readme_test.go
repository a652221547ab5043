package tfprom_test

// The README's Prometheus snippet, the whole body of an example (compiled,
// not run); TestReadmeGoSnippets in the root module checks the README
// against it.

import (
	"context"
	"log"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
	tfprom "github.com/taskflow-dev/taskflow/extra/prometheus"
)

var client redis.UniversalClient

func Example_readmePrometheus() {
	var m *taskflow.Manager
	c := tfprom.New(func(ctx context.Context) (*taskflow.Stats, error) { return m.Stats(ctx) })
	store, err := taskflow.NewRedisStore(client, taskflow.WithObserver(c.Observer()))
	if err != nil {
		log.Fatal(err)
	}
	m = taskflow.NewManager(store)
	prometheus.MustRegister(c) // gauges read at scrape time (one Stats call), counters from the observer
}
