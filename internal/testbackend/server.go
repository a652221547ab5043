package testbackend

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Server is a private redis-server process of one test: its own loopback
// port and temp dir, killed when the test ends.
type Server struct {
	// Port is the loopback port the server listens on (for TLS only, with
	// StartTLSRedisServer).
	Port int
	// Dir is the server's working directory, where it keeps its data
	// files and its log (redis.log).
	Dir string

	t      testing.TB
	args   []string
	conf   []string // a Sentinel's configuration lines (StartSentinel)
	tls    *tls.Config
	cmd    *exec.Cmd
	exited chan error
}

// startAttempts is how often a new server tries another port when the one
// FreePort gave was taken before the server could bind it.
const startAttempts = 3

// StartRedisServer starts redis-server on a free loopback port in a temp
// dir, waits until it answers and kills it when t ends. The defaults are
// --save "" and --appendonly no; args come after them, so an argument of
// args overrides its default. Without a redis-server binary the test is
// skipped, or fails when RequireRedis.
func StartRedisServer(t testing.TB, args ...string) *Server {
	t.Helper()
	return start(t, nil, args)
}

// StartTLSRedisServer is StartRedisServer for a server that speaks only
// TLS on Port (--port 0, --tls-port Port). args name the server's
// certificate, key and CA files (--tls-cert-file and so on); clientTLS is
// what Client and the readiness check dial with.
func StartTLSRedisServer(t testing.TB, clientTLS *tls.Config, args ...string) *Server {
	t.Helper()
	return start(t, clientTLS, args)
}

// StartSentinel starts a Sentinel (redis-server --sentinel: no separate
// binary is needed) on a free loopback port in a temp dir, with conf as
// its configuration lines (e.g. "sentinel monitor m 127.0.0.1 6379 2"),
// waits until it answers and kills it when t ends. The configuration is
// written to <Dir>/sentinel.conf, which the Sentinel rewrites as it
// learns.
func StartSentinel(t testing.TB, conf ...string) *Server {
	t.Helper()
	return startWith(t, nil, nil, conf)
}

func start(t testing.TB, clientTLS *tls.Config, args []string) *Server {
	t.Helper()
	return startWith(t, clientTLS, args, nil)
}

func startWith(t testing.TB, clientTLS *tls.Config, args, conf []string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if RequireRedis() {
			t.Fatalf("redis-server required (TASKFLOW_TEST_REQUIRE_REDIS=1) but not found: %v", err)
		}
		t.Skip("redis-server not installed")
	}
	s := &Server{Dir: t.TempDir(), t: t, args: args, conf: conf, tls: clientTLS}
	var err error
	for range startAttempts {
		s.Port = FreePort(t)
		if err = s.launch(); err == nil {
			t.Cleanup(s.Kill)
			return s
		}
	}
	t.Fatalf("redis-server did not start: %v", err)
	return nil
}

// Start starts the server again after Kill, on the same port and dir.
func (s *Server) Start() {
	s.t.Helper()
	if err := s.launch(); err != nil {
		s.t.Fatalf("redis-server on %d did not start again: %v", s.Port, err)
	}
}

// launch starts the process and waits until it answers a PING, it exits,
// or 10 s pass.
func (s *Server) launch() error {
	port := []string{"--port", strconv.Itoa(s.Port)}
	if s.tls != nil {
		port = []string{"--port", "0", "--tls-port", strconv.Itoa(s.Port)}
	}
	logFile := filepath.Join(s.Dir, "redis.log")
	if s.conf != nil {
		// A Sentinel takes its configuration from a file it can rewrite.
		confFile := filepath.Join(s.Dir, "sentinel.conf")
		lines := append([]string{"port " + strconv.Itoa(s.Port), "bind 127.0.0.1", "dir " + s.Dir,
			"daemonize no", "logfile " + logFile}, s.conf...)
		if err := os.WriteFile(confFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			return err
		}
		s.cmd = exec.Command("redis-server", confFile, "--sentinel")
	} else {
		args := append(port, "--bind", "127.0.0.1", "--dir", s.Dir, "--daemonize", "no",
			"--logfile", logFile, "--save", "", "--appendonly", "no")
		s.cmd = exec.Command("redis-server", append(args, s.args...)...)
	}
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.exited = make(chan error, 1)
	go func(cmd *exec.Cmd, exited chan<- error) { exited <- cmd.Wait() }(s.cmd, s.exited)

	c := s.newClient()
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-s.exited:
			s.cmd = nil
			return fmt.Errorf("redis-server on %d exited: %v; log:\n%s", s.Port, err, lastLines(logFile, 10))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("redis-server on %d did not answer: %v; log:\n%s", s.Port, err, lastLines(logFile, 10))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func lastLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// Kill stops the server with SIGKILL (no shutdown save, no goodbye) and
// waits for it to exit. It does nothing when the server is not running.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Client returns a client on the server that honours context deadlines,
// dials for at most 500 ms and retries once: a test that stops the server
// learns so quickly. It is closed when t ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	c := s.newClient()
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (s *Server) newClient() *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: s.Addr(), TLSConfig: s.tls, ContextTimeoutEnabled: true,
		DialTimeout: 500 * time.Millisecond, MaxRetries: 1,
	})
}
