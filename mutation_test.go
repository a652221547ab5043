package taskflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

func TestCompareAndSetOption(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateManaged(ctx, seedInput())))
		_, err := e.m.StartRunning(ctx, f.ID, IfRevision(5))
		wantErr(t, err, ErrRevisionMismatch)
		f = must(t, try(e.m.StartRunning(ctx, f.ID, IfRevision(0))))
		_, err = e.m.UpdateState(ctx, f.ID, map[string]int{"a": 1}, "", IfRevision(0))
		wantErr(t, err, ErrRevisionMismatch)
		must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"a": 1}, "", IfRevision(1))))
	})
}

// TestRevisionEpochRefusesARevisionHandedOutAgain: a write lost to a
// failover (here: the flow hash put back as it was before the write, as
// a promoted replica that never received it has it) gives its revision
// number to the next write; IfRevisionOf and UpdateAndAppend with the
// flow read before then are refused, because the epoch differs.
func TestRevisionEpochRefusesARevisionHandedOutAgain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f0 := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		key := e.store.keys.flow(f0.ID)
		before := must(t, try(e.client.HGetAll(ctx, key).Result()))
		lost := must(t, try(e.m.UpdateState(ctx, f0.ID, map[string]int{"lost": 1}, "")))
		if lost.Epoch == "" || lost.Epoch == f0.Epoch {
			t.Fatalf("epochs %q then %q: each write must name itself", f0.Epoch, lost.Epoch)
		}
		// The failover: the new master never saw the update.
		if err := e.client.Del(ctx, key).Err(); err != nil {
			t.Fatal(err)
		}
		pairs := make([]any, 0, 2*len(before))
		for k, v := range before {
			pairs = append(pairs, k, v)
		}
		if err := e.client.HSet(ctx, key, pairs...).Err(); err != nil {
			t.Fatal(err)
		}
		other := must(t, try(e.m.UpdateState(ctx, f0.ID, map[string]int{"other": 1}, "")))
		if other.Revision != lost.Revision {
			t.Fatalf("revision %d, the lost write's was %d: the scenario needs it handed out again", other.Revision, lost.Revision)
		}
		_, err := e.m.UpdateState(ctx, f0.ID, map[string]int{"x": 1}, "", IfRevisionOf(lost))
		var rme *RevisionMismatchError
		if !errors.As(err, &rme) || rme.Expected != lost.Revision || rme.Actual != other.Revision || rme.ExpectedEpoch != lost.Epoch {
			t.Fatalf("IfRevisionOf the lost write: %v", err)
		}
		if !strings.Contains(err.Error(), "lost") {
			t.Fatalf("the error does not say the expected write was lost: %v", err)
		}
		if _, _, err := e.store.UpdateAndAppend(ctx, lost, "note", nil); !errors.Is(err, ErrRevisionMismatch) {
			t.Fatalf("UpdateAndAppend of the flow read before the failover: %v", err)
		}
		// The flow as it is now is accepted, by either.
		now := must(t, try(e.m.UpdateState(ctx, f0.ID, map[string]int{"y": 1}, "", IfRevisionOf(other))))
		if _, _, err := e.store.UpdateAndAppend(ctx, now, "note", nil); err != nil {
			t.Fatal(err)
		}
		// A read returns the epoch the last write stamped.
		got := must(t, try(e.m.Get(ctx, f0.ID)))
		if got.Epoch == "" || got.Epoch == now.Epoch {
			t.Fatalf("epoch after UpdateAndAppend: %q (before %q)", got.Epoch, now.Epoch)
		}
	})
}

func TestCancelWithAudit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := e.waitingFlow(t, WaitManual())
		if _, err := e.m.Cancel(e.ctx, f.ID, WithAudit("ops:alice@host", "customer asked, ticket 42")); err != nil {
			t.Fatal(err)
		}
		events := must(t, try(e.m.ListEvents(e.ctx, f.ID, 1)))
		var payload map[string]string
		if err := json.Unmarshal(events[0].Payload, &payload); err != nil {
			t.Fatal(err)
		}
		if events[0].Kind != EventCancelled || payload["actor"] != "ops:alice@host" ||
			payload["reason"] != "customer asked, ticket 42" || len(payload) != 2 {
			t.Fatalf("event %s %s", events[0].Kind, events[0].Payload)
		}

		// An empty reason is left out; no option at all gives {}.
		g := e.waitingFlow(t, WaitManual())
		must(t, try(e.m.Cancel(e.ctx, g.ID, WithAudit("ops:bob", " "))))
		if ev := must(t, try(e.m.ListEvents(e.ctx, g.ID, 1))); string(ev[0].Payload) != `{"actor":"ops:bob"}` {
			t.Fatalf("payload %s", ev[0].Payload)
		}
		h := e.waitingFlow(t, WaitManual())
		must(t, try(e.m.Cancel(e.ctx, h.ID)))
		if ev := must(t, try(e.m.ListEvents(e.ctx, h.ID, 1))); string(ev[0].Payload) != `{}` {
			t.Fatalf("payload %s", ev[0].Payload)
		}

		// Too long: refused, nothing written.
		k := e.waitingFlow(t, WaitManual())
		before := e.dump()
		_, err := e.m.Cancel(e.ctx, k.ID, WithAudit("ops", strings.Repeat("x", maxAuditText+1)))
		if !errors.Is(err, ErrInvalidData) {
			t.Fatalf("err %v, want ErrInvalidData", err)
		}
		if after := e.dump(); len(after) != len(before) || must(t, try(e.m.Get(e.ctx, k.ID))).Status != StatusWaiting {
			t.Fatal("a refused cancel changed the flow space")
		}
	})
}

// replyDropper loses exactly one reply when armed: the reply to the next
// script call (EVALSHA or FCALL) sent on any of its connections. The command
// reaches the server and runs; its reply is read and thrown away, and the
// connection is closed, as a network fault would. go-redis then re-sends
// the command on a new connection (MaxRetries).
type replyDropper struct {
	armed   atomic.Bool
	dropped atomic.Int64
	mu      sync.Mutex
	only    []string // when not empty, only a call that names one of these (scriptRefs) loses its reply
}

// arm makes the next script call lose its reply.
func (d *replyDropper) arm() { d.armFor(nil) }

// armFor makes the next call of the script sc lose its reply (the calls
// before it keep theirs); nil: of any script.
func (d *replyDropper) armFor(sc *script) {
	d.mu.Lock()
	d.only = nil
	if sc != nil {
		for _, r := range scriptRefs(sc) {
			d.only = append(d.only, strings.ToLower(r))
		}
	}
	d.mu.Unlock()
	d.armed.Store(true)
}

// matches reports whether a command written as p is the armed call.
func (d *replyDropper) matches(p []byte) bool {
	low := bytes.ToLower(p)
	if !bytes.Contains(low, []byte("evalsha")) && !bytes.Contains(low, []byte("fcall")) {
		return false
	}
	d.mu.Lock()
	only := d.only
	d.mu.Unlock()
	if len(only) == 0 {
		return true
	}
	for _, o := range only {
		if bytes.Contains(low, []byte(o)) {
			return true
		}
	}
	return false
}

// wrap returns c with the dropper on its reads and writes.
func (d *replyDropper) wrap(c net.Conn) net.Conn { return &dropConn{Conn: c, d: d} }

type dropConn struct {
	net.Conn
	d        *replyDropper
	mu       sync.Mutex
	dropNext bool
}

func (c *dropConn) Write(p []byte) (int, error) {
	if c.d.armed.Load() && c.d.matches(p) && c.d.armed.CompareAndSwap(true, false) {
		c.mu.Lock()
		c.dropNext = true
		c.mu.Unlock()
	}
	return c.Conn.Write(p)
}

func (c *dropConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	drop := c.dropNext && n > 0
	if drop {
		c.dropNext = false
	}
	c.mu.Unlock()
	if !drop {
		return n, err
	}
	// These bytes are (the start of) the reply to the script call, which
	// ran: lose them and cut the line.
	_ = c.Conn.Close()
	c.d.dropped.Add(1)
	return 0, io.EOF
}

// dropProxy is a TCP proxy in front of one Redis server whose upstream
// connections lose a reply when its dropper is armed.
type dropProxy struct {
	replyDropper
	*tcpProxy
}

func startDropProxy(t testing.TB, upstream string) *dropProxy {
	t.Helper()
	p := &dropProxy{}
	p.tcpProxy = startTCPProxy(t, upstream, func(client, server net.Conn, wg *sync.WaitGroup) {
		up := p.wrap(server)
		wg.Add(2)
		// Plain Reader/Writer: io.Copy must not bypass dropConn through
		// the TCP connection's ReadFrom/WriteTo.
		go func() {
			defer wg.Done()
			_, _ = io.Copy(struct{ io.Writer }{up}, struct{ io.Reader }{client})
			_ = up.Close()
		}()
		go func() {
			defer wg.Done()
			_, _ = io.Copy(struct{ io.Writer }{client}, struct{ io.Reader }{up})
			_ = client.Close()
		}()
	})
	return p
}

// lossyClient returns a client for b, with the README's client settings
// (ContextTimeoutEnabled, go-redis's default MaxRetries), whose replies
// the returned dropper can lose: through a TCP proxy for a single server;
// for a cluster, whose nodes redirect clients to their own addresses, by
// wrapping each connection the client dials (the same fault, on the
// client's side of the socket).
func lossyClient(t *testing.T, b backend) (redis.UniversalClient, *replyDropper) {
	t.Helper()
	return lossyClientRetrying(t, b, 0)
}

// lossyClientRetrying is lossyClient with go-redis's MaxRetries set to
// maxRetries (0: the default, 3; -1: none, so a lost reply reaches the
// caller).
func lossyClientRetrying(t *testing.T, b backend, maxRetries int) (redis.UniversalClient, *replyDropper) {
	t.Helper()
	switch b.name {
	case "cluster":
		d := &replyDropper{}
		redirects := 0
		if maxRetries < 0 {
			redirects = -1 // the cluster client re-sends on its redirect loop too
		}
		c := redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: clusterAddrs(), ContextTimeoutEnabled: true, MaxRetries: maxRetries, MaxRedirects: redirects,
			Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var nd net.Dialer
				conn, err := nd.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return d.wrap(conn), nil
			},
		})
		t.Cleanup(func() { _ = c.Close() })
		return c, d
	case "miniredis":
		p := startDropProxy(t, b.mini.Addr())
		c := redis.NewClient(&redis.Options{Addr: p.addr(), ContextTimeoutEnabled: true, MaxRetries: maxRetries})
		t.Cleanup(func() { _ = c.Close() })
		return c, &p.replyDropper
	default:
		opts, err := realRedisOptions()
		if err != nil {
			t.Fatal(err)
		}
		p := startDropProxy(t, opts.Addr)
		o := *opts
		o.Addr = p.addr()
		o.ContextTimeoutEnabled = true
		if maxRetries != 0 {
			o.MaxRetries = maxRetries
		}
		c := redis.NewClient(&o)
		t.Cleanup(func() { _ = c.Close() })
		return c, &p.replyDropper
	}
}

// eventCount returns how many audit events a flow has.
func eventCount(t testing.TB, m *Manager, id uuid.UUID) int {
	t.Helper()
	return len(must(t, try(m.ListEvents(context.Background(), id, 1000))))
}

// TestLostReplyAppliesOnce drops exactly one reply of each mutation kind
// and checks that the call applied once (one event, one revision) and
// reported its true outcome.
func TestLostReplyAppliesOnce(t *testing.T) {
	for _, b := range backends(t) {
		for _, ap := range []bool{false, true} {
			name := b.name
			if ap {
				name += "/autopipelined" // TestAutoPipelinedClient
			}
			testLostReplyAppliesOnce(t, b, name, ap)
		}
	}
}

func testLostReplyAppliesOnce(t *testing.T, b backend, name string, ap bool) {
	t.Run(name, func(t *testing.T) {
		e := newEnv(t, b)
		c, d := lossyClient(t, b)
		if ap {
			c = withAutoPipeline(t, c)
		}
		store := e.reopenStore(c)
		m := NewManager(store)
		defer m.Close()
		ctx := context.Background()
		if err := store.LoadScripts(ctx); err != nil {
			t.Fatal(err)
		}
		// lostFor runs call with one reply lost, that of the first
		// run of the script sha ("": of any script), and checks that
		// it succeeded and appended want events to flow id.
		lostFor := func(name string, sc *script, id func() uuid.UUID, want int, call func() error) {
			t.Helper()
			before := 0
			if id != nil {
				before = eventCount(t, e.m, id())
			}
			n := d.dropped.Load()
			d.armFor(sc)
			if err := call(); err != nil {
				t.Fatalf("%s with a lost reply: %v", name, err)
			}
			if got := d.dropped.Load(); got != n+1 {
				t.Fatalf("%s: %d replies dropped, want 1", name, got-n)
			}
			if id != nil {
				if got := eventCount(t, e.m, id()) - before; got != want {
					t.Fatalf("%s: %d events appended, want %d", name, got, want)
				}
			}
		}
		lost := func(name string, id func() uuid.UUID, want int, call func() error) {
			t.Helper()
			lostFor(name, nil, id, want, call)
		}
		in := CreateManagedInput{ControllerID: "ctl/lost", Goal: "g", OwnerSessionKey: "agent:a:session:1"}
		var f *Flow
		var err error
		lost("CreateManaged", nil, 0, func() error { f, err = m.CreateManaged(ctx, in); return err })
		if f.Revision != 0 || eventCount(t, e.m, f.ID) != 1 {
			t.Fatalf("create: rev %d events %d", f.Revision, eventCount(t, e.m, f.ID))
		}
		if n := len(must(t, try(e.m.ListByOwner(ctx, in.OwnerSessionKey)))); n != 1 {
			t.Fatalf("create made %d flows", n)
		}
		id := func() uuid.UUID { return f.ID }
		lost("StartRunning", id, 1, func() error { f, err = m.StartRunning(ctx, f.ID); return err })
		lost("UpdateState", id, 1, func() error { f, err = m.UpdateState(ctx, f.ID, map[string]int{"a": 1}, "s1"); return err })
		if f.Revision != 2 {
			t.Fatalf("UpdateState: revision %d, want 2", f.Revision)
		}
		lost("UpdateState IfRevision", id, 1, func() error {
			f, err = m.UpdateState(ctx, f.ID, map[string]int{"b": 2}, "", IfRevision(2))
			return err
		})
		if f.Revision != 3 {
			t.Fatalf("IfRevision: revision %d, want 3", f.Revision)
		}
		lost("RecordStepObservation", id, 1, func() error {
			_, err := m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "r1", Status: StepRunning})
			return err
		})
		lost("InsertStep", nil, 0, func() error {
			return store.InsertStep(ctx, &FlowStep{FlowID: f.ID, RunID: "r2", Runtime: RuntimeMirrored, Status: StepRunning})
		})
		if n := len(must(t, try(e.m.ListSteps(ctx, f.ID)))); n != 2 {
			t.Fatalf("%d steps, want 2", n)
		}
		var l *Lease
		lost("Claim", id, 1, func() error {
			var got *Flow
			got, l, err = m.Claim(ctx, "ctl/lost", "w1", time.Minute, WithClaimWait(0))
			if err == nil && got == nil {
				err = errors.New("nothing claimed")
			}
			return err
		})
		if lo := must(t, try(e.m.LeaseOf(ctx, f.ID))); lo == nil || lo.Token != l.Token {
			t.Fatalf("the lease held is not the one returned: %+v vs %+v", lo, l)
		}
		lost("Extend", id, 0, func() error { l, err = m.Extend(ctx, l, 2*time.Minute); return err })
		lost("Release", id, 1, func() error { return m.Release(ctx, l) })
		lost("SetWaiting", id, 1, func() error {
			f, err = m.SetWaiting(ctx, f.ID, WaitExternalEvent("t", "c1"))
			return err
		})
		lost("TryResumeExternal", id, 1, func() error {
			got, err := m.TryResumeExternal(ctx, f.ID, "t", "c1", map[string]int{"x": 1})
			if err == nil && got == nil {
				err = errors.New("reported not resumed")
			}
			return err
		})
		f = must(t, try(e.m.SetWaiting(ctx, f.ID, WaitManual())))
		lost("Resume", id, 1, func() error { f, err = m.Resume(ctx, f.ID, nil); return err })
		rev := f.Revision
		lost("UpdateAndAppend", id, 1, func() error {
			w := *f
			w.Revision = rev
			w.CurrentStep = "written"
			nf, ev, err := store.UpdateAndAppend(ctx, &w, "custom", map[string]int{"n": 1})
			if err == nil && (nf.Revision != rev+1 || ev == nil || ev.Kind != "custom") {
				err = errors.New("wrong outcome")
			}
			return err
		})
		lost("Finish", id, 1, func() error { f, err = m.Finish(ctx, f.ID, map[string]bool{"done": true}); return err })
		if f.Status != StatusFinished {
			t.Fatalf("Finish: %s", f.Status)
		}

		g := must(t, try(e.m.CreateMirrored(ctx, in)))
		gid := func() uuid.UUID { return g.ID }
		lost("Fail", gid, 1, func() error { g, err = m.Fail(ctx, g.ID, "boom"); return err })
		h := must(t, try(e.m.CreateMirrored(ctx, in)))
		hid := func() uuid.UUID { return h.ID }
		lost("RequestCancel", hid, 1, func() error { h, err = m.RequestCancel(ctx, h.ID); return err })
		lost("Cancel", hid, 1, func() error { h, err = m.Cancel(ctx, h.ID); return err })
		if h.Status != StatusCancelled {
			t.Fatalf("Cancel: %s", h.Status)
		}
		// Finish handing off the next flow (WithNext): the re-sent
		// script is handed the same flow, claimed once.
		nin := CreateManagedInput{ControllerID: "ctl/lostnext", Goal: "g", OwnerSessionKey: "agent:a:session:1"}
		var pair []uuid.UUID
		for len(pair) < 2 {
			p := must(t, try(e.m.CreateMirrored(ctx, nin)))
			if e.m.store.keys.shardOf(p.ID) == 3 {
				pair = append(pair, p.ID)
			} else {
				must(t, try(e.m.Cancel(ctx, p.ID)))
			}
		}
		cur, cl, err := m.Claim(ctx, "ctl/lostnext", "w1", time.Minute, WithClaimWait(0))
		if err != nil || cur == nil {
			t.Fatalf("claim for the hand-off: %v %v", cur, err)
		}
		other := pair[0]
		if other == cur.ID {
			other = pair[1]
		}
		lostFor("Finish WithNext", m.store.scripts.transition, func() uuid.UUID { return other }, 1, func() error {
			_, err := m.Finish(ctx, cur.ID, nil, WithLease(cl), WithNext(&cur, &cl, time.Minute))
			if err == nil && (cur == nil || cur.ID != other) {
				err = fmt.Errorf("handed %v, want %s", cur, other)
			}
			return err
		})
		if lo := must(t, try(e.m.LeaseOf(ctx, other))); lo == nil || lo.Token != cl.Token {
			t.Fatalf("the lease held is not the one handed: %+v vs %+v", lo, cl)
		}
		must(t, try(e.m.Finish(ctx, other, nil, WithLease(cl))))
		var mir *Flow
		lost("CreateMirrored", nil, 0, func() error { mir, err = m.CreateMirrored(ctx, in); return err })
		if mir.Revision != 1 || eventCount(t, e.m, mir.ID) != 2 {
			t.Fatalf("CreateMirrored: rev %d events %d", mir.Revision, eventCount(t, e.m, mir.ID))
		}
		// The engine's tick: a due timer resumed once.
		k := must(t, try(e.m.CreateMirrored(ctx, in)))
		must(t, try(e.m.SetWaiting(ctx, k.ID, WaitTimer(e.clock.Now().Add(time.Second)))))
		e.clock.Advance(2 * time.Second)
		eng := NewWaitEngine(m)
		lost("tick", func() uuid.UUID { return k.ID }, 1, func() error {
			rep := eng.TickAt(ctx, e.clock.Now())
			if rep.Resumed != 1 {
				return errors.New("tick reported no resume")
			}
			return nil
		})
		// Retries, and the import's calls.
		r := must(t, try(e.m.CreateMirrored(ctx, in)))
		rid := func() uuid.UUID { return r.ID }
		lost("RetryLater", rid, 1, func() error {
			r, err = m.RetryLater(ctx, r.ID, RetryPolicy{MaxAttempts: 3}, "flaky")
			if err == nil && (r.Status != StatusWaiting || r.Attempts != 1) {
				err = fmt.Errorf("retry: %s, %d attempts", r.Status, r.Attempts)
			}
			return err
		})
		lost("ResetAttempts", rid, 1, func() error {
			r, err = m.ResetAttempts(ctx, r.ID)
			if err == nil && r.Attempts != 0 {
				err = fmt.Errorf("reset: %d attempts", r.Attempts)
			}
			return err
		})
		lost("AppendEventAt", rid, 1, func() error {
			_, err := store.AppendEventAt(ctx, r.ID, "legacy", nil, e.clock.Now())
			return err
		})
		imp := importedFlow(e, StatusRunning, nil, false)
		lost("InsertFlow", nil, 0, func() error {
			_, err := store.InsertFlow(ctx, Import{Flow: imp, Events: importedEvents(imp, 3)})
			return err
		})
		if n := eventCount(t, e.m, imp.ID); n != 3 {
			t.Fatalf("InsertFlow: %d events", n)
		}
		// The agent tool's start (package agenttool) is this call, with
		// the session's owner key: a re-sent create is not "already
		// exists".
		toolStart := CreateManagedInput{ControllerID: "lost/x", Goal: "g", OwnerSessionKey: "agent:lost:session:s",
			RequesterOrigin: "s", CurrentStep: "init", State: map[string]any{}}
		lost("tool start", nil, 0, func() error {
			_, err := m.CreateMirrored(ctx, toolStart)
			return err
		})
		if n := len(must(t, try(e.m.ListByOwner(ctx, toolStart.OwnerSessionKey)))); n != 1 {
			t.Fatalf("tool start made %d flows", n)
		}
		// The resume path: a resume request, and each script of the
		// early events, loses its reply once. Each event resumes one flow,
		// once, within the call, and nothing stays kept or claimed.
		lostFor("PublishResume", store.scripts.publishResume, nil, 0, func() error {
			return m.PublishResume(ctx, ResumeRequest{Topic: "lost", CorrelationID: "pub", Payload: 1})
		})
		if n := e.client.XLen(ctx, e.store.keys.bridge()).Val(); n != 1 {
			t.Fatalf("PublishResume: %d stream entries, want 1", n)
		}
		sc := store.scripts
		for _, step := range []struct {
			name string
			sc   *script
		}{
			{"early_keep", sc.earlyKeep}, {"early_take", sc.earlyTake},
			{"deliver_event", sc.deliverEvent}, {"early_settle", sc.earlySettle},
		} {
			// The publisher's half: a flow waits, the event comes.
			w := e.waitingFlow(t, WaitExternalEvent("lost", step.name))
			lostFor("ResumeByCorrelation, "+step.name, step.sc, func() uuid.UUID { return w.ID }, 1, func() error {
				fs, err := m.ResumeByCorrelation(ctx, "lost", step.name, step.name)
				if err == nil && (len(fs) != 1 || fs[0].ID != w.ID) {
					err = fmt.Errorf("resumed %d flows, want the waiting one", len(fs))
				}
				return err
			})
			requireNoEarlyEvent(t, e, "ResumeByCorrelation, "+step.name)
			if step.name == "early_keep" {
				continue // the waiter's half keeps nothing
			}
			// The waiter's half: the event is kept, SetWaiting takes it.
			must(t, try(e.m.ResumeByCorrelation(ctx, "lost", "w-"+step.name, step.name)))
			k := e.runningFlow(t)
			lostFor("SetWaiting taking a kept event, "+step.name, step.sc, func() uuid.UUID { return k.ID }, 2, func() error {
				got, err := m.SetWaiting(ctx, k.ID, WaitExternalEvent("lost", "w-"+step.name))
				if err == nil && got.Status != StatusRunning {
					err = fmt.Errorf("SetWaiting left the flow %s with an event kept", got.Status)
				}
				return err
			})
			requireNoEarlyEvent(t, e, "SetWaiting, "+step.name)
		}
		// A refused event's settle: the re-send still says the event
		// went back, so that its owner offers it again.
		must(t, try(e.m.ResumeByCorrelation(ctx, "lost", "refused", nil)))
		cp := corrPrefix("lost", "refused")
		gone := e.runningFlow(t)
		take := newEventID()
		eventID, _, ok, err := store.takeEarly(ctx, gone.ID, cp, "", take)
		if err != nil || !ok {
			t.Fatalf("take: %v %v", ok, err)
		}
		if _, outcome, err := store.deliver(ctx, gone.ID, cp, eventID, nil, "resume", false); err != nil || outcome != earlyRefused {
			t.Fatalf("deliver to a flow not waiting: %s %v", outcome, err)
		}
		lostFor("early_settle of a refused event", sc.earlySettle, nil, 0, func() error {
			back, err := store.settleEarly(ctx, cp, eventID, earlyRefused, take)
			if err == nil && !back {
				err = errors.New("the event went back, the re-sent settle says not")
			}
			return err
		})
		if n := e.countEarly(t); n != 1 {
			t.Fatalf("after a refusal: %d events kept, want 1", n)
		}
		requireVerifyClean(t, e.m)
	})
}

// requireNoEarlyEvent checks that no event is kept nor claimed.
func requireNoEarlyEvent(t testing.TB, e *env, what string) {
	t.Helper()
	claims := 0
	for i := 0; i < e.store.keys.shards; i++ {
		claims += int(e.client.HLen(e.ctx, e.store.keys.claims(i)).Val())
	}
	if n := e.countEarly(t); n != 0 || claims != 0 {
		t.Fatalf("%s: %d events kept, %d claimed, want none", what, n, claims)
	}
}

// TestServerStallAppliesOnce stalls a private server past the client's
// read timeout (DEBUG SLEEP) while a mutation is in flight: go-redis
// re-sends it, and it still applies once and reports success.
func TestServerStallAppliesOnce(t *testing.T) {
	srv := startRedisServer(t, "--enable-debug-command", "local")
	c := redis.NewClient(&redis.Options{Addr: srv.addr(), ContextTimeoutEnabled: true, ReadTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	store, err := NewRedisStore(c, WithPrefix("stall"))
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(store)
	ctx := context.Background()
	if err := store.LoadScripts(ctx); err != nil {
		t.Fatal(err)
	}
	f := must(t, try(m.CreateMirrored(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})))
	admin := srv.client(t)
	for i := 0; i < 3; i++ {
		done := make(chan error, 1)
		go func() { done <- admin.Do(ctx, "DEBUG", "SLEEP", "0.3").Err() }()
		time.Sleep(50 * time.Millisecond) // the sleep has begun
		start := time.Now()
		got, err := m.UpdateState(ctx, f.ID, map[string]int{"i": i}, "")
		if err != nil {
			t.Fatalf("update %d across a stall: %v", i, err)
		}
		if time.Since(start) < 200*time.Millisecond {
			t.Fatalf("the call did not meet the stall (%s)", time.Since(start))
		}
		if got.Revision != f.Revision+1 {
			t.Fatalf("update %d: revision %d, want %d (applied twice?)", i, got.Revision, f.Revision+1)
		}
		f = got
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n := eventCount(t, m, f.ID); n != 2+3 {
		t.Fatalf("%d events, want 5", n)
	}
}

// TestBridgeRedeliveryResumesOnce handles one bridge message twice (its
// ack was lost) while the flow waits again on the same correlation id:
// the second delivery must not resume it.
func TestBridgeRedeliveryResumesOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		eng := NewWaitEngine(e.m)
		stream := e.store.keys.bridge()
		if err := eng.ensureGroup(ctx, stream); err != nil {
			t.Fatal(err)
		}
		for _, byFlow := range []bool{true, false} {
			f := must(t, try(e.m.CreateMirrored(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})))
			must(t, try(e.m.SetWaiting(ctx, f.ID, WaitExternalEvent("poll", "job-1"))))
			body := `{"topic":"poll","correlation_id":"job-1"}`
			if byFlow {
				body = `{"flow_id":"` + f.ID.String() + `","topic":"poll","correlation_id":"job-1"}`
			}
			msg := redis.XMessage{ID: "1700000000000-7", Values: map[string]any{"body": body}}
			if err := eng.handle(ctx, stream, msg, true); err != nil {
				t.Fatal(err)
			}
			if got := must(t, try(e.m.Get(ctx, f.ID))); got.Status != StatusRunning {
				t.Fatalf("first delivery did not resume: %s", got.Status)
			}
			// The flow polls again on the same correlation id; a few other
			// calls happen meanwhile.
			for i := 0; i < 2*callMemory; i++ {
				must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"i": i}, "")))
			}
			w := must(t, try(e.m.SetWaiting(ctx, f.ID, WaitExternalEvent("poll", "job-1"))))
			if err := eng.handle(ctx, stream, msg, true); err != nil {
				t.Fatal(err)
			}
			got := must(t, try(e.m.Get(ctx, f.ID)))
			if got.Status != StatusWaiting || got.Revision != w.Revision {
				t.Fatalf("a redelivered message resumed the flow again: %s rev %d (was %d)", got.Status, got.Revision, w.Revision)
			}
			// A new message does resume it.
			msg.ID = "1700000000001-0"
			if err := eng.handle(ctx, stream, msg, true); err != nil {
				t.Fatal(err)
			}
			if got := must(t, try(e.m.Get(ctx, f.ID))); got.Status != StatusRunning {
				t.Fatalf("a new message did not resume: %s", got.Status)
			}
			must(t, try(e.m.Cancel(ctx, f.ID)))
		}
	})
}

// TestCallIDMakesCallerRetriesHarmless: a caller that retries with the
// same WithCallID applies once; a new id applies again; a bad id is
// refused; a taken flow id is ErrAlreadyExists.
func TestCallIDMakesCallerRetriesHarmless(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"})))
		a := must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"n": 1}, "", WithCallID("job-42/attempt"))))
		b := must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"n": 1}, "", WithCallID("job-42/attempt"))))
		if a.Revision != 2 || b.Revision != 2 {
			t.Fatalf("a retried call applied twice: %d %d", a.Revision, b.Revision)
		}
		c := must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"n": 2}, "", WithCallID("job-43"))))
		if c.Revision != 3 {
			t.Fatalf("a new call id did not apply: %d", c.Revision)
		}
		fin := must(t, try(e.m.Finish(ctx, f.ID, nil, WithCallID("fin"))))
		again := must(t, try(e.m.Finish(ctx, f.ID, nil, WithCallID("fin"))))
		if again.Status != StatusFinished || again.Revision != fin.Revision {
			t.Fatalf("retried Finish: %s %d", again.Status, again.Revision)
		}
		if _, err := e.m.Finish(ctx, f.ID, nil, WithCallID("other")); !errors.Is(err, ErrAlreadyTerminal) {
			t.Fatalf("another Finish: %v", err)
		}
		before := e.dump()
		for _, bad := range []string{"", "a b", "a:b", "~x", string(make([]byte, maxCallIDBytes+1))} {
			if _, err := e.m.UpdateState(ctx, f.ID, nil, "", WithCallID(bad)); !errors.Is(err, ErrInvalidData) {
				t.Fatalf("call id %q: %v", bad, err)
			}
		}
		if after := e.dump(); len(after) != len(before) {
			t.Fatal("a refused call id changed Redis")
		}
		// A create under an id that is taken: the sentinel.
		in := CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"}
		_, err := e.store.createWithID(ctx, f.ID, in, false)
		if !errors.Is(err, ErrAlreadyExists) {
			t.Fatalf("create over an existing id: %v", err)
		}
	})
}
