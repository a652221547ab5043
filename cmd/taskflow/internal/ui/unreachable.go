package ui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// unreachable reports whether err says that Redis did not answer (refused
// the connection, closed it, or gave no answer within the page's
// Timeout), as opposed to answering with an error, and says why in a few
// words.
func unreachable(err error, timeout fmt.Stringer) (string, bool) {
	var errno syscall.Errno
	var nerr net.Error
	var dns *net.DNSError
	switch {
	case err == nil:
		return "", false
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		return "no answer within " + timeout.String(), true
	case errors.As(err, &dns):
		return "unknown host " + dns.Name, true
	case errors.As(err, &errno):
		return errno.Error(), true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, redis.ErrClosed),
		errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, net.ErrClosed):
		return "the connection was closed", true
	case errors.As(err, &nerr):
		return strings.TrimPrefix(err.Error(), "taskflow: "), true
	}
	return "", false
}

// failRedis answers a request whose Redis call failed: 503 when Redis is
// unreachable ("Redis is unreachable: connection refused"), 502 when it
// answered with an error.
func (s *Server) failRedis(w http.ResponseWriter, what string, err error) {
	if why, ok := unreachable(err, s.cfg.Timeout); ok {
		s.log.Warn("ui: Redis is unreachable", "while", what, "err", err)
		w.Header().Set("Retry-After", "5")
		s.fail(w, http.StatusServiceUnavailable, "Redis is unreachable ("+why+") while "+what+"; the page works again once Redis answers", nil)
		return
	}
	s.fail(w, http.StatusBadGateway, what, err)
}
