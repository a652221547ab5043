package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	tfprom "github.com/taskflow-dev/taskflow/extra/prometheus"

	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/statsview"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/ui"
)

var uiVerb = &verb{
	name:    "ui",
	args:    "[--addr A] [--read-only] [--token T | --basic-auth U:P]",
	summary: "serve the operator dashboard (overview, flows, actions)",
	help: `Serve the operator dashboard until SIGINT or SIGTERM: the overview (the Stats
figures, refreshed live), flows by status or owner a page at a time, each flow
with its record, state, wait, lease, steps and live audit log, and the actions
cancel (with a reason), resume and requeue an expired lease, each confirmed on
a page of its own. --read-only hides the actions and refuses every POST.

It binds to loopback unless a token or basic-auth credentials are given; the
basic-auth user is the operator named in audit events. With --metrics it also
serves the Prometheus metrics at /metrics. The address it listens on is
printed on stdout.`,
	run: cmdUI,
}

func cmdUI(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	addr := fs.String("addr", "127.0.0.1:8080", "`address` to listen on")
	readOnly := fs.Bool("read-only", false, "hide the actions and refuse every POST")
	token := fs.String("token", os.Getenv("TASKFLOW_UI_TOKEN"), "require this `token` (env TASKFLOW_UI_TOKEN)")
	basic := fs.String("basic-auth", os.Getenv("TASKFLOW_UI_BASIC_AUTH"), "require HTTP basic auth `user:password` (env TASKFLOW_UI_BASIC_AUTH); the user is the operator in audit events")
	metrics := fs.Bool("metrics", false, "also serve the Prometheus metrics at /metrics")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos); err != nil {
		return err
	}
	cfg := ui.Config{ReadOnly: *readOnly, Token: *token, Logger: slog.New(slog.NewTextHandler(c.stderr, nil))}
	if *basic != "" {
		u, p, ok := strings.Cut(*basic, ":")
		if !ok || u == "" || p == "" {
			return usagef("ui: --basic-auth wants user:password")
		}
		cfg.BasicUser, cfg.BasicPassword = u, p
	}
	if err := ui.CheckAddr(*addr, cfg); err != nil {
		return usagef("%v", err)
	}
	m, err := c.connectWarn(ctx)
	if err != nil {
		return err
	}
	cfg.Stats = overviewStats(m)
	if *metrics {
		if cfg.Metrics, err = statsview.Handler(tfprom.New(m.Stats)); err != nil {
			return err
		}
	}
	srv, err := ui.New(m, cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	mode := ""
	if *readOnly {
		mode = " (read-only)"
	}
	fmt.Fprintf(c.stdout, "dashboard%s on http://%s/ for prefix %q; Ctrl-C stops\n", mode, ln.Addr(), c.prefix)
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
