package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// server is a private redis-server: its own loopback port, its own temp
// dir, no persistence, killed by stop.
type server struct {
	cmd    *exec.Cmd
	dir    string
	addr   string
	client *redis.Client // for INFO and fills; PoolSize clientPoolSize
	log    *os.File
	exited chan struct{}
}

// errNoServer reports that no redis-server binary is available.
var errNoServer = errors.New("bench: no redis-server binary for a private server")

// startServer starts a private redis-server on the first free loopback
// port from cfg.BasePort, and waits until it answers.
func (r *runner) startServer(ctx context.Context) (*server, error) {
	path, err := exec.LookPath(r.cfg.RedisServer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoServer, err)
	}
	var lastErr error
	for port := r.cfg.BasePort; port < r.cfg.BasePort+64; port++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue // in use
		}
		_ = l.Close()
		s, err := launch(ctx, path, port)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("bench: could not start a private redis-server: %v", lastErr)
}

func launch(ctx context.Context, path string, port int) (*server, error) {
	dir, err := os.MkdirTemp("", "tfbench-redis-")
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(dir + "/redis.log")
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command(path,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", dir, "--hz", "100", "--maxclients", "1000")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		_ = os.RemoveAll(dir)
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s := &server{cmd: cmd, dir: dir, addr: "127.0.0.1:" + strconv.Itoa(port), log: logf, exited: exited}
	s.client = redis.NewClient(&redis.Options{Addr: s.addr, PoolSize: clientPoolSize, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
	deadline := time.Now().Add(5 * time.Second)
	for {
		select {
		case <-exited:
			_ = s.client.Close()
			_ = logf.Close()
			b, _ := os.ReadFile(dir + "/redis.log")
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("redis-server on port %d exited: %s", port, lastLines(string(b), 3))
		default:
		}
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := s.client.Ping(pctx).Err()
		cancel()
		if err == nil {
			// Make sure it is ours and not a server that took the port
			// in between.
			pid := infoField(ctx, s.client, "server", "process_id")
			if pid == strconv.Itoa(cmd.Process.Pid) {
				return s, nil
			}
			s.kill()
			return nil, fmt.Errorf("port %d answered with another server (pid %s)", port, pid)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.kill()
			return nil, fmt.Errorf("redis-server on port %d did not answer: %v", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// kill stops the server (SIGKILL: nothing to persist) and removes its dir.
func (s *server) kill() {
	if s == nil {
		return
	}
	if s.client != nil {
		_ = s.client.Close()
	}
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		if s.exited != nil {
			select {
			case <-s.exited:
			case <-time.After(5 * time.Second):
			}
		}
	}
	if s.log != nil {
		_ = s.log.Close()
	}
	_ = os.RemoveAll(s.dir)
}

// newClient opens another client on the private server.
func (s *server) newClient() *redis.Client {
	return redis.NewClient(s.clientOptions())
}

// newAutoPipelinedClient is newClient built with go-redis's
// AutoPipelineOptions (the defaults).
func (s *server) newAutoPipelinedClient() *redis.Client {
	o := s.clientOptions()
	o.AutoPipelineOptions = &redis.AutoPipelineOptions{}
	return redis.NewClient(o)
}

func (s *server) clientOptions() *redis.Options {
	return &redis.Options{Addr: s.addr, PoolSize: clientPoolSize, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
}

// memUsage is the server's memory for dataset comparisons.
type memUsage struct {
	used    int64 // used_memory
	clients int64 // mem_clients_normal (connection buffers)
}

// data is used_memory without client buffers: what keys cost.
func (m memUsage) data() int64 { return m.used - m.clients }

// stableMemory reads INFO memory until two reads 300 ms apart agree within
// 0.05% (an incremental rehash of the main dict may be finishing), for at
// most 5 s.
func stableMemory(ctx context.Context, c redis.UniversalClient) (memUsage, error) {
	read := func() (memUsage, error) {
		s, err := c.Info(ctx, "memory").Result()
		if err != nil {
			return memUsage{}, err
		}
		var m memUsage
		for _, line := range strings.Split(s, "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if !ok {
				continue
			}
			switch k {
			case "used_memory":
				m.used, _ = strconv.ParseInt(v, 10, 64)
			case "mem_clients_normal":
				m.clients, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		return m, nil
	}
	prev, err := read()
	if err != nil {
		return prev, err
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return prev, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
		cur, err := read()
		if err != nil {
			return cur, err
		}
		d := cur.data() - prev.data()
		if d < 0 {
			d = -d
		}
		if float64(d) <= 0.0005*float64(cur.data()) {
			return cur, nil
		}
		prev = cur
	}
	return prev, nil
}
