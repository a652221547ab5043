package ui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/internal/plainjson"
)

// keepAlive is how often an idle live stream sends a comment line, so
// proxies keep it open and a closed tab is noticed.
const keepAlive = 15 * time.Second

// live streams a flow's audit events as server-sent events, as they are
// appended (Manager.Watch): one "message" per event, its data the event
// as JSON. The page writes each into its timeline as text. An id that is
// no flow is answered 404; beyond Config.MaxStreams streams at once, 503.
// The streams share the Manager's one subscription per shard.
func (s *Server) live(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		http.Error(w, "not a flow id", http.StatusBadRequest)
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		// The page keeps its log and its EventSource tries again.
		w.Header().Set("Retry-After", "30")
		http.Error(w, fmt.Sprintf("too many live streams (%d, the dashboard's --max-streams): reload later", s.cfg.MaxStreams), http.StatusServiceUnavailable)
		return
	}
	// The subscription starts within the page's Timeout; the stream then
	// runs until the client goes away.
	ctx, stop := context.WithCancel(r.Context())
	defer stop()
	late := time.AfterFunc(s.cfg.Timeout, stop)
	events, err := s.m.Watch(ctx, id)
	if !late.Stop() {
		if err == nil {
			for range events { // stop ended it
			}
		}
		err = fmt.Errorf("watch: %w", context.DeadlineExceeded)
	}
	if errors.Is(err, taskflow.ErrNotFound) {
		http.Error(w, "no flow "+id.String(), http.StatusNotFound)
		return
	}
	if why, ok := unreachable(err, s.cfg.Timeout); ok {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "Redis is unreachable ("+why+")", http.StatusServiceUnavailable)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprint(w, ": watching\n\n")
	fl.Flush()
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			fl.Flush()
		case ev, ok := <-events:
			if !ok {
				return
			}
			b, err := plainjson.Marshal(viewEvent(ev))
			if err != nil {
				continue
			}
			if _, err := fmt.Fprintf(w, "id: %s\ndata: %s\n\n", ev.ID, b); err != nil {
				return
			}
			fl.Flush()
		}
	}
}
