package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	tfprom "github.com/taskflow-dev/taskflow/extra/prometheus"

	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/statsview"
)

var serveVerb = &verb{
	name:    "serve",
	args:    "--metrics ADDR",
	summary: "serve the flow space's Prometheus metrics",
	help: `Serve the flow space's Prometheus metrics at http://ADDR/metrics (the Stats
figures as gauges, computed at each scrape) until SIGINT or SIGTERM. The
address it listens on is printed on stdout.`,
	run: cmdServe,
}

func cmdServe(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	addr := fs.String("metrics", "", "listen `address` of the /metrics endpoint, e.g. :9464")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos); err != nil {
		return err
	}
	if *addr == "" {
		return usagef("serve: --metrics ADDR is required (e.g. --metrics :9464)")
	}
	m, err := c.connectWarn(ctx)
	if err != nil {
		return err
	}
	h, err := statsview.Handler(tfprom.New(m.Stats))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if c.json {
		_ = writeJSONLine(c.stdout, map[string]string{"metrics": "http://" + ln.Addr().String() + "/metrics"})
	} else {
		fmt.Fprintf(c.stdout, "metrics on http://%s/metrics\n", ln.Addr())
	}
	return statsview.Serve(ctx, ln, h)
}
