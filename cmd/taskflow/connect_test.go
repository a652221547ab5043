package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/internal/testbackend"
)

func TestUnreachableRedis(t *testing.T) {
	for _, args := range [][]string{
		{"list"}, {"show", uuid.NewString()}, {"tick"}, {"prune", "--older-than", "7d"}, {"watch"},
	} {
		r := runCLI(t, append(args, "--redis", "redis://127.0.0.1:1")...).wantCode(t, 1)
		r.wantOneLineError(t, "cannot reach Redis at 127.0.0.1:1")
	}
	r := runCLI(t, "fsck", "--redis", "redis://127.0.0.1:1?addr=127.0.0.1:2").wantCode(t, 1)
	r.wantOneLineError(t, "cannot reach Redis Cluster at 127.0.0.1:1,127.0.0.1:2")
}

func TestMistypedPrefix(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		e.create(ownerA, "exists")
		typo := e.prefix + "x"
		t.Cleanup(func() {
			for _, k := range e.scanKeys(typo + ":*") {
				_ = e.client.Del(context.Background(), k).Err()
			}
		})
		for _, args := range [][]string{{"list"}, {"fsck"}, {"show", uuid.NewString()}, {"explain", uuid.NewString()}, {"stuck"}, {"watch", uuid.NewString()}, {"prune", "--older-than", "7d"}} {
			r := runCLI(t, append(args, "--redis", e.url, "--prefix", typo)...).wantCode(t, 1)
			r.wantOneLineError(t, `no flow space "`+typo+`" at `)
			if !strings.Contains(r.stderr, e.prefix) || !strings.Contains(r.stderr, "did you mean --prefix "+e.prefix) {
				t.Fatalf("%v: the existing space is not named: %s", args, r.stderr)
			}
		}
		// Nothing was written under the typo.
		if keys := e.scanKeys(typo + ":*"); len(keys) != 0 {
			t.Fatalf("keys written under the mistyped prefix: %v", keys)
		}
		// The engine, and a watch of every flow, serve a space not created
		// yet, with a warning.
		for _, args := range [][]string{{"tick"}, {"watch", "--for", "300ms"}} {
			r := runCLI(t, append(args, "--redis", e.url, "--prefix", typo)...).wantCode(t, 0)
			if !strings.Contains(r.stderr, "warning: no flow space") || !strings.Contains(r.stderr, "did you mean --prefix "+e.prefix) {
				t.Fatalf("%v on a new space: %q", args, r.stderr)
			}
			for _, k := range e.scanKeys(typo + ":*") {
				_ = e.client.Del(context.Background(), k).Err()
			}
		}
		// An empty page of an existing space names it.
		if r := e.run("list", "--status", "finished").wantCode(t, 0); !strings.HasPrefix(r.stdout, `no flows match in flow space "`+e.prefix+`" at `) {
			t.Fatalf("empty list: %q", r.stdout)
		}
		// fsck names what it checked.
		r := e.run("fsck").wantCode(t, 0)
		if !strings.Contains(r.stdout, `flow space "`+e.prefix+`" at `) {
			t.Fatalf("fsck: %q", r.stdout)
		}
	})
}

// Reading commands on a prefix with no data write nothing: a mistyped
// --prefix or --shards must not pin a new flow space's layout.
func TestReadingCommandsWriteNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		// An unknown flow space is named as such (exit 1), and left alone.
		e.run("list").wantCode(t, 1)
		e.run("list", "--shards", "3").wantCode(t, 1)
		e.run("fsck").wantCode(t, 1)
		e.run("show", uuid.NewString()).wantCode(t, 1)
		if keys := e.scanKeys(e.prefix + ":*"); len(keys) != 0 {
			t.Fatalf("reading commands wrote %v", keys)
		}
	})
}

// testPKI is a CA and a server certificate for 127.0.0.1, as PEM files.
// The TLS test starts its own redis-server with TLS only, on a throwaway
// CA and server certificate, and runs the CLI on a rediss:// URL that
// trusts the CA through SSL_CERT_FILE.

type testPKI struct {
	caFile, certFile, keyFile string
	pool                      *x509.CertPool
}

func newTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "taskflow CLI test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKeyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{
		caFile:   filepath.Join(dir, "ca.pem"),
		certFile: filepath.Join(dir, "server.pem"),
		keyFile:  filepath.Join(dir, "server.key"),
		pool:     x509.NewCertPool(),
	}
	p.pool.AddCert(ca)
	writePEM(t, p.caFile, "CERTIFICATE", caDER)
	writePEM(t, p.certFile, "CERTIFICATE", srvDER)
	writePEM(t, p.keyFile, "EC PRIVATE KEY", srvKeyDER)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startTLSRedis starts redis-server speaking only TLS on a free loopback
// port and returns the port; the server is killed when the test ends.
func startTLSRedis(t *testing.T) (int, testPKI) {
	t.Helper()
	pki := newTestPKI(t, t.TempDir())
	srv := testbackend.StartTLSRedisServer(t, &tls.Config{RootCAs: pki.pool, ServerName: "127.0.0.1"},
		"--tls-cert-file", pki.certFile, "--tls-key-file", pki.keyFile,
		"--tls-ca-cert-file", pki.caFile, "--tls-auth-clients", "no")
	return srv.Port, pki
}

// runCLIWithEnv runs the binary with the CLI-free environment minus the
// certificate variables, plus env.
func runCLIWithEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	var all []string
	for _, kv := range cliEnv() {
		if !strings.HasPrefix(kv, "SSL_CERT_FILE=") && !strings.HasPrefix(kv, "SSL_CERT_DIR=") {
			all = append(all, kv)
		}
	}
	return runCLIEnv(t, append(all, env...), args...)
}

func TestTLS(t *testing.T) {
	port, pki := startTLSRedis(t)
	url := fmt.Sprintf("rediss://127.0.0.1:%d/0", port)
	prefix := "tfcli-tls-" + uuid.NewString()[:8]
	trust := []string{"SSL_CERT_FILE=" + pki.caFile}

	// The flow space does not exist yet: list says so (over TLS).
	r := runCLIWithEnv(t, trust, "list", "--redis", url, "--prefix", prefix).wantCode(t, 1)
	r.wantOneLineError(t, fmt.Sprintf("no flow space %q at 127.0.0.1:%d", prefix, port))
	var page listPage

	r = runCLIWithEnv(t, trust, "demo", "--redis", url, "--prefix", prefix, "--flows", "20", "--workers", "2").wantCode(t, 0)
	wantPasses(t, r)
	r = runCLIWithEnv(t, trust, "list", "--json", "--limit", "100", "--redis", url, "--prefix", prefix).wantCode(t, 0)
	if err := decodeJSON(r.stdout, &page); err != nil || len(page.Flows) != 20 {
		t.Fatalf("list after the demo: %v, %d flows", err, len(page.Flows))
	}
	runCLIWithEnv(t, trust, "fsck", "--redis", url, "--prefix", prefix).wantCode(t, 0)

	// Without the CA the server's certificate is not trusted.
	r = runCLIWithEnv(t, nil, "list", "--redis", url, "--prefix", prefix).wantCode(t, 1)
	r.wantOneLineError(t, "certificate")
	t.Logf("without the CA: %s", strings.TrimSpace(r.stderr))
	if !strings.Contains(r.stderr, "cannot reach Redis at 127.0.0.1:"+strconv.Itoa(port)) || r.stdout != "" {
		t.Fatalf("untrusted certificate:\nstdout %q\nstderr %q", r.stdout, r.stderr)
	}
}

func decodeJSON(s string, v any) error {
	return json.Unmarshal([]byte(s), v)
}

// sentinelSetup is a private master, one replica and one Sentinel
// monitoring them as "mymaster", on free loopback ports.
type sentinelSetup struct {
	master, replica *testbackend.Server
	sentinelPort    int
	sentinel        *redis.Client
}

// startSentinelSetup starts the three servers; the Sentinel is
// redis-server --sentinel with a generated config in a temp dir, killed
// when the test ends. It returns once the Sentinel knows the replica.
func startSentinelSetup(t *testing.T) *sentinelSetup {
	t.Helper()
	s := &sentinelSetup{master: testbackend.StartRedisServer(t)}
	s.replica = testbackend.StartRedisServer(t, "--replicaof", "127.0.0.1", strconv.Itoa(s.master.Port))
	dir := t.TempDir()
	var cmd *exec.Cmd
	for range 3 { // another process may take the free port first
		s.sentinelPort = testbackend.FreePort(t)
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\nsentinel monitor mymaster 127.0.0.1 %d 1\n"+
			"sentinel down-after-milliseconds mymaster 5000\nsentinel failover-timeout mymaster 10000\n",
			s.sentinelPort, dir, filepath.Join(dir, "sentinel.log"), s.master.Port)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd = exec.Command("redis-server", conf, "--sentinel")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		s.sentinel = redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s.sentinelPort), MaxRetries: -1})
		if s.until(t, 10*time.Second, func(ctx context.Context) bool { return s.sentinel.Ping(ctx).Err() == nil }) {
			break
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = s.sentinel.Close()
		cmd = nil
	}
	if cmd == nil {
		t.Fatal("redis-server --sentinel did not start")
	}
	t.Cleanup(func() {
		_ = s.sentinel.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// The Sentinel learns the replica from the master's INFO, every 10 s
	// at first.
	if !s.until(t, 60*time.Second, func(ctx context.Context) bool {
		reps, err := s.sentinel.Do(ctx, "SENTINEL", "REPLICAS", "mymaster").Slice()
		if err != nil || len(reps) == 0 {
			return false
		}
		return strings.Contains(fmt.Sprint(reps[0]), "master-link-status ok") ||
			strings.Contains(fmt.Sprint(reps[0]), "master-link-status:ok")
	}) {
		t.Fatal("the Sentinel never saw the replica in sync")
	}
	return s
}

// until polls cond every 100 ms until it holds or d passes.
func (s *sentinelSetup) until(t *testing.T, d time.Duration, cond func(ctx context.Context) bool) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ok := cond(ctx)
		cancel()
		if ok {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// masterPort asks the Sentinel which port the master is on.
func (s *sentinelSetup) masterPort(ctx context.Context) string {
	addr, err := s.sentinel.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster").StringSlice()
	if err != nil || len(addr) != 2 {
		return ""
	}
	return addr[1]
}

// Every verb reaches the master through Sentinel, in both URL forms: a
// write (cancel) lands on the master (the replica is read-only), reads
// and fsck see its flows, and after a failover a new run talks to the new
// master.
func TestSentinelURL(t *testing.T) {
	s := startSentinelSetup(t)
	prefix := testbackend.Prefix("tfcli-sentinel")
	sentinelURL := fmt.Sprintf("redis-sentinel://127.0.0.1:%d?master_name=mymaster", s.sentinelPort)
	goRedisForm := fmt.Sprintf("redis://127.0.0.1:%d?master_name=mymaster", s.sentinelPort)
	// A first Sentinel address that answers nothing: the next one is asked.
	twoSentinels := fmt.Sprintf("redis-sentinel://127.0.0.1:1,127.0.0.1:%d/0?master_name=mymaster", s.sentinelPort)

	// The servers are the test's own and die with it: no keys to delete.
	e := &testEnv{t: t, prefix: prefix, client: s.master.Client(t)}
	e.m = e.manager(time.Now)
	for i, u := range []string{sentinelURL, goRedisForm, twoSentinels} {
		f := e.create(ownerA, fmt.Sprintf("through sentinel %d", i))
		run := func(args ...string) result {
			return runCLI(t, append(args, "--redis", u, "--prefix", prefix)...)
		}
		if r := run("show", f.ID.String()).wantCode(t, 0); !strings.Contains(r.stdout, "through sentinel") {
			t.Fatalf("%s: show: %s", u, r.stdout)
		}
		run("cancel", f.ID.String()).wantCode(t, 0)
		if got := e.get(f.ID); got.Status != "cancelled" {
			t.Fatalf("%s: the master has the flow %s", u, got.Status)
		}
		run("fsck").wantCode(t, 0)
		run("list").wantCode(t, 0)
	}
	runCLI(t, "list", "--redis", fmt.Sprintf("redis-sentinel://127.0.0.1:%d", s.sentinelPort)).wantCode(t, 2).wantOneLineError(t, "names no master")
	runCLI(t, "list", "--redis", fmt.Sprintf("redis-sentinel://127.0.0.1:%d?master_name=nosuch", s.sentinelPort)).
		wantCode(t, 1).wantOneLineError(t, `cannot reach the master "nosuch" through Sentinel at 127.0.0.1:`)

	// A failover: the replica becomes the master, and the CLI follows.
	if err := s.sentinel.Do(context.Background(), "SENTINEL", "FAILOVER", "mymaster").Err(); err != nil {
		t.Fatal(err)
	}
	newPort := strconv.Itoa(s.replica.Port)
	if !s.until(t, 60*time.Second, func(ctx context.Context) bool {
		return s.masterPort(ctx) == newPort && s.replica.Client(t).Do(ctx, "ROLE").Val().([]any)[0] == "master"
	}) {
		t.Fatal("the failover did not happen")
	}
	e2 := &testEnv{t: t, prefix: prefix, client: s.replica.Client(t)}
	e2.m = e2.manager(time.Now)
	f := e2.create(ownerA, "after the failover")
	runCLI(t, "cancel", f.ID.String(), "--redis", sentinelURL, "--prefix", prefix).wantCode(t, 0)
	if got := e2.get(f.ID); got.Status != "cancelled" {
		t.Fatalf("the new master has the flow %s", got.Status)
	}
}

// TestProbeTimeoutsWithinStatedBound: a probe that gets no answer says
// "no answer within <pingTimeout>", so no timeout of its client may be
// longer (go-redis's defaults are 5 s for the dial and each read), the
// URL's own timeouts included, and the ping's deadline must bound every
// socket operation (ContextTimeoutEnabled).
func TestProbeTimeoutsWithinStatedBound(t *testing.T) {
	type timeouts struct {
		dial, read, write time.Duration
		ctx               bool
	}
	check := func(t *testing.T, got timeouts) {
		t.Helper()
		for name, d := range map[string]time.Duration{"dial": got.dial, "read": got.read, "write": got.write} {
			if d <= 0 || d > pingTimeout {
				t.Errorf("%s timeout %v, want within (0, %v]", name, d, pingTimeout)
			}
		}
		if !got.ctx {
			t.Errorf("ContextTimeoutEnabled false: the ping's %v deadline does not bound socket reads", pingTimeout)
		}
	}
	for _, q := range []string{"", "dial_timeout=10s&read_timeout=10s&write_timeout=10s", "read_timeout=-1&write_timeout=-1", "read_timeout=-2"} {
		t.Run("plain?"+q, func(t *testing.T) {
			opts, err := redis.ParseURL("redis://127.0.0.1:6379/0?" + q)
			if err != nil {
				t.Fatal(err)
			}
			o := probeOptions(*opts)
			check(t, timeouts{o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.ContextTimeoutEnabled})
		})
		t.Run("cluster?"+q, func(t *testing.T) {
			opts, err := redis.ParseClusterURL("redis://127.0.0.1:7101?addr=127.0.0.1:7102&" + q)
			if err != nil {
				t.Fatal(err)
			}
			o := probeClusterOptions(*opts)
			check(t, timeouts{o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.ContextTimeoutEnabled})
		})
		t.Run("sentinel?"+q, func(t *testing.T) {
			opts, err := sentinelOptions("redis-sentinel://127.0.0.1:26379?master_name=m&" + q)
			if err != nil {
				t.Fatal(err)
			}
			o := probeFailoverOptions(*opts)
			check(t, timeouts{o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.ContextTimeoutEnabled})
		})
	}
}

// TestProbeGivesUpWithinStatedBound runs the binary against a black hole
// (a loopback listener that accepts and never answers) as a plain server,
// a cluster node and a Sentinel: each says "no answer within <pingTimeout>"
// and gives up within that bound plus a generous margin. The Sentinel probe
// used to take twice the bound: closing its client waited for the
// Sentinel lookup still running in go-redis's background dial.
func TestProbeGivesUpWithinStatedBound(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				break
			}
			held = append(held, conn) // never read, never answered
		}
		for _, conn := range held {
			conn.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	addr := ln.Addr().String()
	const margin = 2 * time.Second // the bug's excess is a whole pingTimeout
	for _, tc := range []struct{ name, url, want string }{
		{"plain", "redis://" + addr, "cannot reach Redis at " + addr},
		{"cluster", "redis://" + addr + "?addr=" + addr, "cannot reach Redis Cluster at " + addr + "," + addr},
		{"sentinel", "redis-sentinel://" + addr + "?master_name=m", "through Sentinel at " + addr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			r := runCLI(t, "list", "--redis", tc.url).wantCode(t, 1)
			elapsed := time.Since(start)
			r.wantOneLineError(t, tc.want+": no answer within "+pingTimeout.String())
			if elapsed > pingTimeout+margin {
				t.Errorf("gave up after %v; the message says %v", elapsed.Round(100*time.Millisecond), pingTimeout)
			}
		})
	}
}
