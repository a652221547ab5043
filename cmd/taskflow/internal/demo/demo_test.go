package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
)

// connect opens a manager the simple way (the CLI's dialer also knows
// Cluster and Sentinel URLs).
func connect(_ context.Context, url, prefix string) (*taskflow.Manager, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	store, err := taskflow.NewRedisStore(redis.NewClient(opts), taskflow.WithPrefix(prefix))
	if err != nil {
		return nil, err
	}
	return taskflow.NewManager(store), nil
}

// TestRunEmbedded plays a small fleet in process on the embedded Redis;
// the CLI's tests run the built binary on every backend.
func TestRunEmbedded(t *testing.T) {
	var out bytes.Buffer
	err := Run(context.Background(), Config{Flows: 30, Workers: 3, Connect: connect, Out: &out, JSON: true})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out.String())
	}
	if !rep.Pass || !rep.Embedded || rep.Flows != 30 || len(rep.Checks) != 7 ||
		!strings.HasPrefix(rep.Prefix, DefaultPrefix+"-") || rep.ByStatus["finished"] != 24 {
		t.Fatalf("report: %+v", rep)
	}
}

func TestRunRefusesABadConfig(t *testing.T) {
	good := Config{Flows: 1, Workers: 1, Connect: connect, Out: &bytes.Buffer{}}
	for name, edit := range map[string]func(*Config){
		"no flows":     func(c *Config) { c.Flows = 0 },
		"many flows":   func(c *Config) { c.Flows = MaxFlows + 1 },
		"no workers":   func(c *Config) { c.Workers = 0 },
		"many workers": func(c *Config) { c.Workers = MaxWorkers + 1 },
		"no connect":   func(c *Config) { c.Connect = nil },
		"no out":       func(c *Config) { c.Out = nil },
	} {
		cfg := good
		edit(&cfg)
		if err := Run(context.Background(), cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
