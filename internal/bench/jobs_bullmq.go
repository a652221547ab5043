package bench

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// bullmqVersion is the BullMQ release the jobs suite installs from npm
// (the 5.x line, on ioredis, which the figures describe).
const bullmqVersion = "5.47.3"

// npmInstallTimeout bounds `npm install` of the jobs suite.
const npmInstallTimeout = 3 * time.Minute

// bullmqScript is the Node side of the jobs suite: it runs one pass's
// commands (add, start workers, drain, close) and answers in JSON lines.
//
//go:embed jobs_bullmq.js
var bullmqScript []byte

// nodeProc is the running Node side: `node jobs_bullmq.js HOST PORT` in a
// temp dir holding node_modules/bullmq.
type nodeProc struct {
	dir    string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // stdout, line by line; closed at EOF
	stderr *tailBuffer
	exited chan struct{}
	// versions reported by the script: bullmq, ioredis, node.
	bullmq, ioredis, node string
}

// tailBuffer keeps the last 8 KiB written to it, for error messages.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 8192 {
		t.b = t.b[len(t.b)-8192:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// startBullMQ installs BullMQ into a temp dir and starts the Node side
// against the Redis at addr. When node or npm is not on PATH, or the
// install or the script's start fails, it returns a nil process and a
// sentence saying why the BullMQ half is skipped (the caller prints it);
// err is only for a cancelled ctx.
func startBullMQ(ctx context.Context, addr string) (p *nodeProc, skip string, err error) {
	nodePath, err := exec.LookPath("node")
	if err != nil {
		return nil, "BullMQ half skipped: no `node` on PATH (install Node.js 18+ and npm to compare with BullMQ)", nil
	}
	npmPath, err := exec.LookPath("npm")
	if err != nil {
		return nil, "BullMQ half skipped: no `npm` on PATH (it installs bullmq@" + bullmqVersion + " into a temp dir)", nil
	}
	dir, err := os.MkdirTemp("", "tfbench-bullmq-")
	if err != nil {
		return nil, "BullMQ half skipped: temp dir: " + err.Error(), nil
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	pkg := `{"private": true, "name": "tfbench-bullmq", "dependencies": {"bullmq": "` + bullmqVersion + `"}}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "package.json"), []byte(pkg), 0o644); err != nil {
		return nil, "BullMQ half skipped: " + err.Error(), nil
	}
	if err := os.WriteFile(filepath.Join(dir, "jobs_bullmq.js"), bullmqScript, 0o644); err != nil {
		return nil, "BullMQ half skipped: " + err.Error(), nil
	}
	ictx, cancel := context.WithTimeout(ctx, npmInstallTimeout)
	install := exec.CommandContext(ictx, npmPath, "install", "--no-audit", "--no-fund", "--loglevel=error")
	install.Dir = dir
	outb, ierr := install.CombinedOutput()
	cancel()
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if ierr != nil {
		return nil, fmt.Sprintf("BullMQ half skipped: `npm install bullmq@%s` failed: %v: %s", bullmqVersion, ierr, lastLines(string(outb), 3)), nil
	}
	host, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command(nodePath, "jobs_bullmq.js", host, port)
	cmd.Dir = dir
	p = &nodeProc{dir: dir, cmd: cmd, lines: make(chan string, 16), stderr: &tailBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, "BullMQ half skipped: " + err.Error(), nil
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "BullMQ half skipped: " + err.Error(), nil
	}
	if err := cmd.Start(); err != nil {
		return nil, "BullMQ half skipped: starting node: " + err.Error(), nil
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	go func() { _ = cmd.Wait(); close(p.exited) }()
	var hello struct{ Bullmq, Ioredis, Node string }
	if err := p.call(ctx, map[string]any{"cmd": "hello"}, &hello); err != nil {
		p.stop()
		if cerr := ctx.Err(); cerr != nil {
			return nil, "", cerr
		}
		return nil, "BullMQ half skipped: the Node side did not start: " + err.Error(), nil
	}
	p.bullmq, p.ioredis, p.node = hello.Bullmq, hello.Ioredis, hello.Node
	ok = true
	return p, "", nil
}

// nodeCallTimeout bounds one command of the Node side (a whole drain).
const nodeCallTimeout = 10 * time.Minute

// call sends one command and decodes its answer into reply (may be nil).
// After a timeout or a cancelled ctx the process is out of step: the
// caller stops using it.
func (p *nodeProc) call(ctx context.Context, msg map[string]any, reply any) error {
	ctx, cancel := context.WithTimeout(ctx, nodeCallTimeout)
	defer cancel()
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("node %s: write: %w (stderr: %s)", msg["cmd"], err, lastLines(p.stderr.String(), 5))
	}
	var line string
	select {
	case <-ctx.Done():
		return fmt.Errorf("node %s: %w", msg["cmd"], ctx.Err())
	case l, ok := <-p.lines:
		if !ok {
			return fmt.Errorf("node %s: the process ended (stderr: %s)", msg["cmd"], lastLines(p.stderr.String(), 5))
		}
		line = l
	}
	var head struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(line), &head); err != nil {
		return fmt.Errorf("node %s: bad answer %q: %w", msg["cmd"], line, err)
	}
	if !head.OK {
		return fmt.Errorf("node %s: %s", msg["cmd"], lastLines(head.Error, 4))
	}
	if reply != nil {
		if err := json.Unmarshal([]byte(line), reply); err != nil {
			return fmt.Errorf("node %s: bad answer %q: %w", msg["cmd"], line, err)
		}
	}
	return nil
}

// stop ends the Node side (closing stdin lets it close its connections
// and exit; it is killed after 10 s) and removes its temp dir.
func (p *nodeProc) stop() {
	if p == nil {
		return
	}
	_ = p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	_ = os.RemoveAll(p.dir)
}

// bullJobs is the BullMQ half of one pass: one queue named queue (keys
// bull:<queue>:*), jobs added through the Node side.
type bullJobs struct {
	p     *nodeProc
	c     *redis.Client // the private server, for cleanup
	queue string
	spec  jobsSpec
}

func (b *bullJobs) name() string { return "BullMQ" }

func (b *bullJobs) open(ctx context.Context) error {
	return b.p.call(ctx, map[string]any{"cmd": "open", "queue": b.queue}, nil)
}

func (b *bullJobs) create(ctx context.Context) (float64, error) {
	var r struct{ Secs float64 }
	err := b.p.call(ctx, map[string]any{"cmd": "add", "items": b.spec.items, "producers": b.spec.producers}, &r)
	return r.Secs, err
}

func (b *bullJobs) prepare(ctx context.Context) error {
	return b.p.call(ctx, map[string]any{"cmd": "workers", "items": b.spec.items,
		"workers": b.spec.shape.workers, "concurrency": b.spec.shape.loops}, nil)
}

func (b *bullJobs) drain(ctx context.Context) (float64, error) {
	var r struct {
		Secs                        float64
		Completed, Distinct, Failed int
	}
	if err := b.p.call(ctx, map[string]any{"cmd": "run"}, &r); err != nil {
		return 0, err
	}
	if r.Completed != b.spec.items || r.Distinct != b.spec.items || r.Failed != 0 {
		return 0, fmt.Errorf("BullMQ completed %d jobs (%d distinct, %d failed), want %d", r.Completed, r.Distinct, r.Failed, b.spec.items)
	}
	return r.Secs, nil
}

func (b *bullJobs) close(ctx context.Context) error {
	var r struct{ Counts map[string]int }
	if err := b.p.call(ctx, map[string]any{"cmd": "close"}, &r); err != nil {
		return err
	}
	if r.Counts["completed"] != b.spec.items {
		return fmt.Errorf("BullMQ queue counts %v after the drain, want %d completed", r.Counts, b.spec.items)
	}
	return nil
}

func (b *bullJobs) cleanup(ctx context.Context) error {
	_, err := deletePrefix(ctx, b.c, "bull:"+b.queue)
	return err
}
