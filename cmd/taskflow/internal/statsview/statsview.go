// Package statsview renders a flow space's Stats for the CLI (`taskflow
// stats`) and serves its Prometheus metrics (`taskflow serve`).
package statsview

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/taskflow-dev/taskflow"
	tfprom "github.com/taskflow-dev/taskflow/extra/prometheus"
)

// Print writes st as an aligned table.
func Print(w io.Writer, st *taskflow.Stats) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "at\t%s\n", st.At.Format(time.RFC3339))
	fmt.Fprintf(tw, "flows\t%d\n", st.Total)
	for _, s := range taskflow.Statuses() {
		fmt.Fprintf(tw, "  %s\t%d\n", s, st.Flows[s])
	}
	fmt.Fprintf(tw, "timers pending\t%d\n", st.Timers.Pending)
	fmt.Fprintf(tw, "timers due\t%d\n", st.Timers.Due)
	fmt.Fprintf(tw, "tick lag\t%s\n", round(st.Timers.Lag))
	fmt.Fprintf(tw, "leases held\t%d\n", st.Leases.Held)
	fmt.Fprintf(tw, "leases expired\t%d (oldest %s ago)\n", st.Leases.Expired, round(st.Leases.ExpiredLag))
	fmt.Fprintf(tw, "bridge unhandled\t%d (backlog %d, pending %d)\n", st.Bridge.Length, st.Bridge.Backlog, st.Bridge.Pending)
	fmt.Fprintf(tw, "early events\t%d\n", st.EarlyEvents)
	fmt.Fprintf(tw, "parents waiting on children\t%d\n", st.Joining)
	fmt.Fprintf(tw, "relay backlog\t%d (due %d)\n", st.Relay, st.RelayDue)
	fmt.Fprintf(tw, "schedules\t%d (%d paused, %d due, lag %s)\n", st.Schedules, st.SchedulesPaused, st.SchedulesDue, round(st.ScheduleLag))
	fmt.Fprintf(tw, "schedule fires\t%d (%d skipped)\n", st.ScheduleFires, st.ScheduleSkips)
	if len(st.Ready) == 0 {
		fmt.Fprintf(tw, "ready queues\tnone\n")
	}
	for _, q := range st.Ready {
		fmt.Fprintf(tw, "ready %s\t%d (oldest %s, %d waited over %s)\n", q.Controller, q.Depth, round(q.OldestAge), q.Stale, st.StaleAfter)
	}
	for _, k := range st.Keys {
		fmt.Fprintf(tw, "key %s\t%d in flight of %s, rate %s, backlog %d, weight %d\n", k.Key, k.InFlight,
			Bound(k.Concurrency), Rate(k.KeyLimit), k.Backlog, k.Weight)
	}
	return tw.Flush()
}

// Bound prints a limit's figure, "-" for none.
func Bound(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

// Rate prints a key's rate as N/interval, "-" for none: 50/1s, 500/1m,
// 10/1.5s.
func Rate(l taskflow.KeyLimit) string {
	if l.Rate == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%s", l.Rate, Per(l.Per))
}

// Per prints a rate's interval in its largest whole unit: 1s, 1m, 24h,
// 250ms; 1.5s as time.Duration prints it.
func Per(d time.Duration) string {
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}} {
		if d >= u.d && d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.name
		}
	}
	return d.String()
}

func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

// Handler returns the /metrics handler for a flow space: the Stats
// gauges computed at scrape time, the counters of obs (when the caller
// set tfprom's observer on its store), and the Go runtime's collectors.
func Handler(c *tfprom.Collector) (http.Handler, error) {
	reg := prometheus.NewRegistry()
	for _, x := range []prometheus.Collector{c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(x); err != nil {
			return nil, err
		}
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil
}

// Serve serves h at /metrics on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
