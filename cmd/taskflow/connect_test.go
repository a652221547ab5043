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
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
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
		for _, args := range [][]string{{"list"}, {"fsck"}, {"show", uuid.NewString()}, {"watch", uuid.NewString()}, {"prune", "--older-than", "7d"}} {
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
