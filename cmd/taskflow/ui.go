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

	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow"
	tfprom "github.com/taskflow-dev/taskflow/extra/prometheus"

	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/statsview"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/ui"
)

var uiVerb = &verb{
	name:    "ui",
	args:    "[--addr A] [--read-only] [--token T | --basic-auth U:P]",
	summary: "serve the operator dashboard (overview, flows, schedules, actions)",
	help: `Serve the operator dashboard until SIGINT or SIGTERM: the overview (the Stats
figures, refreshed live), flows by status or owner a page at a time, each flow
with why it is where it is and what will move it (a "stuck" badge when
nothing in place will), its record, state, wait, lease, steps, live audit log,
its parent and its children (a page at a time, with its join's progress), and
the actions
cancel (with a reason), resume and requeue an expired lease, each confirmed on
a page of its own; and the schedules, each with its next fire times, its
recent fires linking to their flows, and the buttons pause (with a note),
resume and trigger. --read-only hides the actions and refuses every POST.

It binds to loopback unless a token or basic-auth credentials are given; the
basic-auth user is the operator named in audit events. Without credentials it
answers only requests whose Host header is a loopback name (localhost,
127.0.0.1, [::1]) or one of --allowed-hosts, so a web page that points its own
name at 127.0.0.1 (DNS rebinding) can neither read it nor act. With --metrics it also
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
	allowed := fs.String("allowed-hosts", "", "comma-separated host `names` the Host header may name besides loopback ones (without credentials)")
	maxStreams := fs.Int("max-streams", ui.DefaultMaxStreams, "live streams (a flow page's audit log) served at once; one more is answered 503")
	timeout := new(time.Duration)
	durationVar(fs, timeout, "timeout", ui.DefaultTimeout, "`time` a page waits for Redis before it says Redis is unreachable (503)")
	metrics := fs.Bool("metrics", false, "also serve the Prometheus metrics at /metrics")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos); err != nil {
		return err
	}
	if *maxStreams < 1 {
		return usagef("ui: --max-streams %d is below 1", *maxStreams)
	}
	if *timeout <= 0 || *timeout > ui.MaxTimeout {
		return usagef("ui: --timeout %s is not in (0, %s]", fmtDuration(*timeout), fmtDuration(ui.MaxTimeout))
	}
	cfg := ui.Config{ReadOnly: *readOnly, Token: *token, Logger: slog.New(slog.NewTextHandler(c.stderr, nil)),
		MaxStreams: *maxStreams, Timeout: *timeout}
	for _, h := range strings.Split(*allowed, ",") {
		if h = strings.TrimSpace(h); h != "" {
			cfg.AllowedHosts = append(cfg.AllowedHosts, h)
		}
	}
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
	shared, err := c.connectWarn(ctx)
	if err != nil {
		return err
	}
	m, err := c.uiManager(shared)
	if err != nil {
		return err
	}
	cfg.Stats = overviewStats(m)
	cfg.CheckSpace = c.checkSpace(m.Store().Client())
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

// uiManager is the dashboard's manager: on a client of its own that
// fails fast when Redis is down (one dial attempt and one retry, not
// go-redis's ~2 s of dial retries per command) and honours each page's
// deadline on the socket, so a page says "Redis is unreachable" within
// --timeout.
func (c *cli) uiManager(shared *taskflow.Manager) (*taskflow.Manager, error) {
	var client redis.UniversalClient
	switch sc := shared.Store().Client().(type) {
	case *redis.Client:
		o := *sc.Options()
		o.DialerRetries, o.MaxRetries, o.ContextTimeoutEnabled = 1, 1, true
		client = redis.NewClient(&o)
	case *redis.ClusterClient:
		o := *sc.Options()
		o.DialerRetries, o.MaxRetries, o.ContextTimeoutEnabled = 1, 1, true
		client = redis.NewClusterClient(&o)
	default:
		return shared, nil
	}
	c.closers = append(c.closers, func() { _ = client.Close() })
	return newManager(client, c.prefix, c.shards)
}

// checkSpace tells the dashboard when the flow space does not exist (no
// layout key: a mistyped --prefix), naming the flow spaces that do.
func (c *cli) checkSpace(client redis.UniversalClient) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		n, err := client.Exists(ctx, layoutKey(c.prefix)).Result()
		if err != nil || n > 0 {
			return nil // an unreachable Redis is said by the page itself
		}
		return c.noSpace(ctx, client)
	}
}
