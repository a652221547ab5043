package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	tfprom "github.com/taskflow-dev/taskflow/extra/prometheus"

	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/statsview"
)

func cmdStats(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("stats", "[--watch] [--interval D] [--count N]", "Print how many flows are in each status, each controller's ready queue\n"+
		"(depth, oldest age), timers due and the tick lag, leases held and expired,\n"+
		"the resume bridge's backlog, and kept early events. Two round trips\n"+
		"whatever the number of flows. With --watch, print again every interval\n"+
		"until SIGINT or SIGTERM (or N snapshots); with --json one line each.")
	watch := fs.Bool("watch", false, "refresh every --interval")
	interval := fs.Duration("interval", 2*time.Second, "refresh `interval` of --watch")
	count := fs.Int("count", 0, "with --watch, stop after `N` snapshots (0: never)")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos); err != nil {
		return err
	}
	if *interval <= 0 || *count < 0 {
		return usagef("stats: --interval must be positive and --count not negative")
	}
	m, err := c.connect(ctx)
	if err != nil {
		return err
	}
	if !*watch {
		st, err := m.Stats(ctx)
		if err != nil {
			return err
		}
		if c.json {
			return writeJSON(c.stdout, st)
		}
		return statsview.Print(c.stdout, st)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	t := time.NewTicker(*interval)
	defer t.Stop()
	for n := 1; ; n++ {
		st, err := m.Stats(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			fmt.Fprintf(c.stderr, "taskflow: %s\n", oneLine(cleanError(err)))
		case c.json:
			err = writeJSONLine(c.stdout, st)
		default:
			if n > 1 {
				fmt.Fprintln(c.stdout)
			}
			err = statsview.Print(c.stdout, st)
		}
		if err != nil && ctx.Err() == nil {
			return err
		}
		if *count > 0 && n >= *count {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func cmdServe(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("serve", "--metrics ADDR", "Serve the flow space's Prometheus metrics at http://ADDR/metrics (the Stats\n"+
		"figures as gauges, computed at each scrape) until SIGINT or SIGTERM. The\n"+
		"address it listens on is printed on stdout.")
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
	m, err := c.connect(ctx)
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
	log := c.logger(slog.LevelInfo)
	log.Info("taskflow: serving metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	if c.json {
		_ = writeJSONLine(c.stdout, map[string]string{"metrics": "http://" + ln.Addr().String() + "/metrics"})
	} else {
		fmt.Fprintf(c.stdout, "metrics on http://%s/metrics\n", ln.Addr())
	}
	return statsview.Serve(ctx, ln, h)
}
