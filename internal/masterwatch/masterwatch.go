// Package masterwatch follows the master a go-redis failover client
// (redis.NewFailoverClient) talks to. go-redis asks the Sentinels for the
// master on every dial, and after a switch it closes its command
// connections, so the next dial reaches the new master; a subscription on
// an old master that stays up is not closed. A dial to another address
// than the last one is a master change: the channel Current returned is
// closed, and whoever holds subscriptions (taskflow's Claim) subscribes
// again.
package masterwatch

import (
	"context"
	"net"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Watch follows the server a failover client dials. It sends no command
// of its own.
type Watch struct {
	mu      sync.Mutex
	addr    string
	epoch   uint64
	changed chan struct{} // closed (and replaced) on a change
}

// New hooks the dials of a failover client; nil for any other client (a
// single server's address does not change; a Cluster client follows its
// nodes' subscriptions itself).
func New(client redis.UniversalClient) *Watch {
	c, ok := client.(*redis.Client)
	if !ok || c.Options().Addr != "FailoverClient" {
		return nil
	}
	w := &Watch{changed: make(chan struct{})}
	c.AddHook(w)
	return w
}

// Current returns the change count and a channel closed at the next
// change.
func (w *Watch) Current() (uint64, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.epoch, w.changed
}

// dialed notes a connection to addr: another address than the last one
// is a change.
func (w *Watch) dialed(addr string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if addr == w.addr {
		return
	}
	first := w.addr == ""
	w.addr = addr
	if first {
		return
	}
	w.epoch++
	close(w.changed)
	w.changed = make(chan struct{})
}

// DialHook notes where each new connection goes (redis.Hook).
func (w *Watch) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err == nil && conn != nil {
			w.dialed(conn.RemoteAddr().String())
		}
		return conn, err
	}
}

// ProcessHook passes commands through (redis.Hook).
func (w *Watch) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

// ProcessPipelineHook passes pipelines through (redis.Hook).
func (w *Watch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
