package taskflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/internal/testbackend"
)

// The Sentinel failover suite: a master, two replicas and three
// Sentinels of the test's own, a fleet writing through
// redis.NewFailoverClient, the master killed with SIGKILL while its
// replicas lag behind, and an account of every acknowledged write.

// lagLink is a TCP proxy on a replica's link to its master: what the
// master sends is held for the current lag before it is passed on, and
// what is still held when the master dies is dropped. With a lag the
// replica is behind as one on a slow link or a busy host is, and a crash
// of the master loses what the replica had not received.
type lagLink struct {
	*tcpProxy
	lag atomic.Int64 // nanoseconds
}

func startLagLink(t testing.TB, upstream string) *lagLink {
	t.Helper()
	l := &lagLink{}
	l.tcpProxy = startTCPProxy(t, upstream, l.pipe)
	return l
}

func (l *lagLink) port() int { return l.ln.Addr().(*net.TCPAddr).Port }

// setLag holds what the master sends for d from now on.
func (l *lagLink) setLag(d time.Duration) { l.lag.Store(int64(d)) }

type lagChunk struct {
	data []byte
	due  time.Time
}

// pipe passes what the replica sends at once, and what the master sends
// once its lag has passed.
func (l *lagLink) pipe(replica, master net.Conn, wg *sync.WaitGroup) {
	chunks := make(chan lagChunk, 1<<16)
	dead := make(chan struct{})
	wg.Add(3)
	go func() { // replica -> master (acks): at once
		defer wg.Done()
		_, _ = io.Copy(struct{ io.Writer }{master}, struct{ io.Reader }{replica})
		_ = master.Close()
	}()
	go func() { // master -> link: stamped with when it may pass
		defer wg.Done()
		defer close(dead)
		for {
			buf := make([]byte, 32<<10)
			n, err := master.Read(buf)
			if n > 0 {
				chunks <- lagChunk{data: buf[:n], due: time.Now().Add(time.Duration(l.lag.Load()))}
			}
			if err != nil {
				return
			}
		}
	}()
	go func() { // link -> replica: when due; dropped once the master died
		defer wg.Done()
		defer replica.Close()
		for {
			var c lagChunk
			select {
			case c = <-chunks:
			case <-dead:
				// The master is gone: what it sent and is due
				// already was passed on; the rest is lost.
				for {
					select {
					case c = <-chunks:
						if time.Now().Before(c.due) {
							return
						}
						if _, err := replica.Write(c.data); err != nil {
							return
						}
					default:
						return
					}
				}
			}
			if wait := time.Until(c.due); wait > 0 {
				select {
				case <-time.After(wait):
				case <-dead:
					return // the master died while this was held
				}
			}
			if _, err := replica.Write(c.data); err != nil {
				return
			}
		}
	}()
}

// sentinelSetup is a master, two replicas (each behind a lagLink) and
// three Sentinels monitoring the master as sentinelMaster.
type sentinelSetup struct {
	master    *redisServer
	replicas  []*redisServer
	links     []*lagLink
	sentinels []*testbackend.Server
}

const sentinelMaster = "tf"

func startSentinelSetup(t *testing.T) *sentinelSetup {
	t.Helper()
	s := &sentinelSetup{master: startRedisServer(t, "--repl-diskless-sync-delay", "0")}
	for range 2 {
		link := startLagLink(t, s.master.addr())
		r := startRedisServer(t, "--replicaof", "127.0.0.1", strconv.Itoa(link.port()))
		waitReplicaUp(t, r.client(t))
		s.links = append(s.links, link)
		s.replicas = append(s.replicas, r)
	}
	for range 3 {
		s.sentinels = append(s.sentinels, testbackend.StartSentinel(t,
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2", sentinelMaster, s.master.port),
			// The README's advice: not near 1 s on a busy host (this one
			// runs a whole test suite beside it).
			"sentinel down-after-milliseconds "+sentinelMaster+" 1500",
			// A Sentinel that took part in a failover of this master
			// starts no other for twice this: no second promotion while
			// the new master is busy.
			"sentinel failover-timeout "+sentinelMaster+" 60000",
		))
	}
	// Wait until every Sentinel knows the two others and both replicas.
	ctx := context.Background()
	for _, sn := range s.sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr()})
		ok := false
		for range 300 {
			m, err := c.Master(ctx, sentinelMaster).Result()
			if err == nil && m["num-other-sentinels"] == "2" && m["num-slaves"] == "2" {
				ok = true
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		_ = c.Close()
		if !ok {
			t.Fatalf("sentinel %s never saw the others and both replicas", sn.Addr())
		}
	}
	return s
}

func (s *sentinelSetup) sentinelAddrs() []string {
	var addrs []string
	for _, sn := range s.sentinels {
		addrs = append(addrs, sn.Addr())
	}
	return addrs
}

// failoverClient is the README's client through Sentinel.
func (s *sentinelSetup) failoverClient(t testing.TB) *redis.Client {
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: sentinelMaster, SentinelAddrs: s.sentinelAddrs(),
		ContextTimeoutEnabled: true,
		DialTimeout:           500 * time.Millisecond,
		ReadTimeout:           2 * time.Second, WriteTimeout: 2 * time.Second,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// watchSwitch reports the time of the first +switch-master a Sentinel
// announces.
func (s *sentinelSetup) watchSwitch(t testing.TB) <-chan time.Time {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.sentinels[0].Addr()})
	ps := c.Subscribe(context.Background(), "+switch-master")
	if _, err := ps.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ps.Close(); _ = c.Close() })
	at := make(chan time.Time, 1)
	go func() {
		for range ps.Channel() {
			at <- time.Now()
			return
		}
	}()
	return at
}

// ledger records every acknowledged write with a check that it is still
// there, by kind (update, create, claim, finish, ...), and the calls that
// applied but were not confirmed replicated or failed.
type ledger struct {
	mu        sync.Mutex
	checks    map[string][]func(v *flowView) bool
	unconfirm map[string]int
	failed    map[string]int
	firstErr  map[string]error
	finishes  map[uuid.UUID][]string // acknowledged finishes of a flow: by whom
}

func newLedger() *ledger {
	return &ledger{checks: map[string][]func(*flowView) bool{}, unconfirm: map[string]int{},
		failed: map[string]int{}, firstErr: map[string]error{}, finishes: map[uuid.UUID][]string{}}
}

// record books the outcome of one write of kind: acknowledged (check
// runs at the end), applied but not confirmed replicated, or failed.
func (l *ledger) record(kind string, err error, check func(v *flowView) bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err == nil:
		l.checks[kind] = append(l.checks[kind], check)
	case errors.Is(err, ErrNotReplicated):
		l.unconfirm[kind]++
	default:
		l.failed[kind]++
		if l.firstErr[kind] == nil {
			l.firstErr[kind] = err
		}
	}
}

// flowView reads flows and their audit logs once each, for the checks.
type flowView struct {
	t      testing.TB
	m      *Manager
	flows  map[uuid.UUID]*Flow
	events map[uuid.UUID][]*FlowEvent
}

func (v *flowView) flow(id uuid.UUID) *Flow {
	if f, ok := v.flows[id]; ok {
		return f
	}
	f, err := v.m.Get(context.Background(), id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		v.t.Fatal(err)
	}
	v.flows[id] = f
	return f
}

func (v *flowView) log(id uuid.UUID) []*FlowEvent {
	if evs, ok := v.events[id]; ok {
		return evs
	}
	evs, err := v.m.ListEvents(context.Background(), id, 1000)
	if err != nil && !errors.Is(err, ErrNotFound) {
		v.t.Fatal(err)
	}
	v.events[id] = evs
	return evs
}

// untilKnown runs call and, while its outcome is unknown (the connection
// broke under it), repeats it with the call id the error names, as the
// README advises: the flow remembers the call, so it applies once.
func untilKnown(ctx context.Context, call func(opts ...MutationOption) (*Flow, error)) (*Flow, error) {
	f, err := call()
	for {
		var oe *OutcomeUnknownError
		if !errors.As(err, &oe) || oe.CallID == "" || ctx.Err() != nil {
			return f, err
		}
		time.Sleep(100 * time.Millisecond)
		f, err = call(WithCallID(oe.CallID))
	}
}

// ackedUpdate is an acknowledged update: the flow it returned and the
// state key it added.
type ackedUpdate struct {
	f   *Flow
	key string
}

// failoverFigures are what one run measured.
type failoverFigures struct {
	acked, lost       map[string]int
	unconfirmed       map[string]int
	failed            map[string]int
	unavailable       time.Duration // kill to the first write applied
	switchAfterKill   time.Duration // kill to Sentinel's +switch-master
	firstClaim        time.Duration // switch to the first claim of a flow made after it
	finishedTwice     int
	stuck             int
	timersResumed     int
	timersNotOnce     int
	parkedClaim       time.Duration // a Claim waiting across the switch: switch to its flow
	parkedClaimWaited bool
	staleCAS          int // flows whose last update acknowledged before the kill was lost
	revisionReused    int // of those, whose lost revision the new master handed out again
	staleCASAccepted  int // of those, an IfRevisionOf the lost update that was not refused
}

func (f failoverFigures) totalAcked() (n int) {
	for _, v := range f.acked {
		n += v
	}
	return n
}

func (f failoverFigures) totalLost() (n int) {
	for _, v := range f.lost {
		n += v
	}
	return n
}

func (f failoverFigures) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "acked %d, lost %d (", f.totalAcked(), f.totalLost())
	for i, k := range []string{"update", "create", "claim", "finish", "resume"} {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d/%d", k, f.lost[k], f.acked[k])
	}
	fmt.Fprintf(&b, "); applied not confirmed %v; failed %v; finished twice %d; stuck %d; timers resumed %d (not once %d); "+
		"+switch-master %.1fs after the kill, writes back %.1fs after it; first claim of a flow made after the switch %.2fs after it; "+
		"a Claim parked across the switch got its flow %.2fs after it; "+
		"IfRevisionOf a lost update refused on %d flows (its revision handed out again on %d), accepted on %d",
		f.unconfirmed, f.failed, f.finishedTwice, f.stuck, f.timersResumed, f.timersNotOnce,
		f.switchAfterKill.Seconds(), f.unavailable.Seconds(), f.firstClaim.Seconds(), f.parkedClaim.Seconds(),
		f.staleCAS-f.staleCASAccepted, f.revisionReused, f.staleCASAccepted)
	return b.String()
}

// Load and timing of a failover run.
const (
	failoverWriters  = 8
	failoverFlows    = 64 // updated flows, failoverFlows/failoverWriters per writer
	failoverWorkers  = 4
	failoverTimers   = 20
	failoverResumes  = 300              // flows waiting for an external event, one resume request each
	failoverClaimFor = 10 * time.Second // the workers' claim wait
	failoverWarmup   = 2 * time.Second  // load before the replicas lag
	failoverLag      = 300 * time.Millisecond
	failoverLagFor   = 1500 * time.Millisecond // load with lagging replicas, then the kill
	failoverAfter    = 3 * time.Second         // load after the switch
	failoverDrain    = 8 * time.Second         // at most, for the workers to finish what is left
)

// runFailover runs the fleet on a fresh setup, kills the master and
// reports what the acknowledged writes became.
func runFailover(t *testing.T, opts ...StoreOption) failoverFigures {
	setup := startSentinelSetup(t)
	switched := setup.watchSwitch(t)
	client := setup.failoverClient(t)
	store, err := NewRedisStore(client, append([]StoreOption{WithPrefix("failover")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := store.LoadScripts(ctx); err != nil {
		t.Fatal(err)
	}
	m := NewManager(store)
	defer m.Close()
	led := newLedger()
	in := func(controller string) CreateManagedInput {
		return CreateManagedInput{ControllerID: controller, Goal: "failover", OwnerSessionKey: "drill"}
	}

	// Flows the writers update (controller "upd": nobody claims them).
	updated := make([]uuid.UUID, failoverFlows)
	for i := range updated {
		updated[i] = must(t, try(m.CreateMirrored(ctx, in("upd")))).ID
	}
	// Flows waiting on timers due while the master is down.
	killAt := time.Now().Add(failoverWarmup + failoverLagFor)
	timers := make([]uuid.UUID, failoverTimers)
	for i := range timers {
		f := must(t, try(m.CreateMirrored(ctx, in("tmr"))))
		at := killAt.Add(time.Duration(i) * 50 * time.Millisecond).UTC().Format(time.RFC3339Nano)
		must(t, try(m.SetWaiting(ctx, f.ID, json.RawMessage(`{"kind":"timer","at":"`+at+`"}`))))
		timers[i] = f.ID
	}

	// Flows waiting for an external event: each gets one resume request,
	// published during the load and handled by the engine's bridge.
	resumable := make([]uuid.UUID, failoverResumes)
	for i := range resumable {
		f := must(t, try(m.CreateMirrored(ctx, in("rsm"))))
		must(t, try(m.SetWaiting(ctx, f.ID, WaitExternalEvent("drill", "c"+strconv.Itoa(i)))))
		resumable[i] = f.ID
	}

	load, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var wg sync.WaitGroup
	var killed atomic.Int64 // unix ns of the kill
	// switchNs: unix ns of the switch, as the fleet sees it: its first
	// write applied after the kill, or Sentinel's +switch-master if that
	// comes first (go-redis learns the new master at its promotion,
	// before the Sentinels announce the end of the failover).
	var switchNs atomic.Int64
	var backAt atomic.Int64 // unix ns of the first write applied that was sent after it
	applied := func(sent time.Time, err error) {
		if k := killed.Load(); k != 0 && sent.UnixNano() > k && (err == nil || errors.Is(err, ErrNotReplicated)) {
			if now := time.Now().UnixNano(); backAt.CompareAndSwap(0, now) {
				switchNs.CompareAndSwap(0, now) // the client reached the new master
			}
		}
	}
	pause := func() {
		select {
		case <-load.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}

	var lastAcked sync.Map // updated flow id -> its last update acknowledged before the kill
	// Updates: each writer owns its flows; write k of a flow adds the
	// key "k<k>" to its state, so a lost one is missing for good.
	for w := range failoverWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := updated[w*failoverFlows/failoverWriters : (w+1)*failoverFlows/failoverWriters]
			for k := 0; load.Err() == nil; k++ {
				id, key := mine[k%len(mine)], "k"+strconv.Itoa(k)
				sent := time.Now()
				f, err := m.UpdateState(load, id, map[string]int{key: k}, "")
				if err == nil && killed.Load() == 0 {
					lastAcked.Store(id, ackedUpdate{f, key})
				}
				if load.Err() != nil {
					return
				}
				applied(sent, err)
				led.record("update", err, func(v *flowView) bool {
					f := v.flow(id)
					if f == nil {
						return false
					}
					_, ok := stateOf(v.t, f)[key]
					return ok
				})
			}
		}()
	}
	// Creates: claimable flows (controller "work"), made running at once.
	var created sync.Map // flow id -> time.Time of its create
	wg.Add(1)
	go func() {
		defer wg.Done()
		for load.Err() == nil {
			sent := time.Now()
			f, err := m.CreateMirrored(load, in("work"))
			if load.Err() != nil {
				return
			}
			applied(sent, err)
			if f != nil {
				created.Store(f.ID, time.Now())
			}
			if err == nil {
				id := f.ID
				led.record("create", nil, func(v *flowView) bool { return v.flow(id) != nil })
			} else {
				led.record("create", err, nil)
			}
			pause()
		}
	}()
	// Workers: claim, then finish under the lease. A claim or finish that
	// applied but is not confirmed replicated is carried on with, as the
	// README says to.
	var firstClaimAfterSwitch atomic.Int64
	work, stopWork := context.WithCancel(ctx)
	defer stopWork()
	var workers sync.WaitGroup
	var claims atomic.Int64
	for w := range failoverWorkers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for n := 0; work.Err() == nil; n++ {
				worker := fmt.Sprintf("w%d-%d", w, n)
				f, l, err := m.Claim(work, "work", worker, time.Minute, WithClaimWait(failoverClaimFor))
				if work.Err() != nil {
					return
				}
				if f == nil {
					if err != nil {
						led.record("claim", err, nil)
						time.Sleep(50 * time.Millisecond)
					}
					continue
				}
				claims.Add(1)
				id := f.ID
				if sw := switchNs.Load(); sw != 0 {
					if c, ok := created.Load(id); ok && c.(time.Time).UnixNano() > sw {
						firstClaimAfterSwitch.CompareAndSwap(0, time.Now().UnixNano())
					}
				}
				led.record("claim", err, func(v *flowView) bool {
					for _, ev := range v.log(id) {
						if ev.Kind == EventClaimed && strings.Contains(string(ev.Payload), `"`+worker+`"`) {
							return true
						}
					}
					return false
				})
				sent := time.Now()
				_, err = untilKnown(work, func(opts ...MutationOption) (*Flow, error) {
					return m.Finish(work, id, map[string]string{"by": worker}, append(opts, WithLease(l))...)
				})
				if work.Err() != nil {
					return
				}
				applied(sent, err)
				if err == nil {
					led.mu.Lock()
					led.finishes[id] = append(led.finishes[id], worker)
					led.mu.Unlock()
				}
				led.record("finish", err, func(v *flowView) bool {
					f := v.flow(id)
					if f == nil || f.Status != StatusFinished {
						return false
					}
					return stateOf(v.t, f)["by"] == worker
				})
			}
		}()
	}
	// Resume requests: one per waiting flow, by correlation, each under
	// its own request id; a publish whose reply was lost is published
	// again under the same id (it applies once). Acknowledged, the flow
	// must resume, once.
	var resumesAcked sync.Map // flow id -> true: its request was acknowledged
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < len(resumable) && load.Err() == nil; i++ {
			id := resumable[i]
			req := ResumeRequest{ID: "drill-" + strconv.Itoa(i), Topic: "drill", CorrelationID: "c" + strconv.Itoa(i)}
			sent := time.Now()
			err := m.PublishResume(load, req)
			for n := 0; errors.Is(err, ErrOutcomeUnknown) && n < 50 && load.Err() == nil; n++ {
				time.Sleep(50 * time.Millisecond)
				err = m.PublishResume(load, req)
			}
			if load.Err() != nil {
				return
			}
			applied(sent, err)
			if err == nil {
				resumesAcked.Store(id, true)
			}
			led.record("resume", err, func(v *flowView) bool {
				resumed := 0
				for _, ev := range v.log(id) {
					if ev.Kind == EventResumed {
						resumed++
					}
				}
				f := v.flow(id)
				if resumed == 1 && f != nil && f.Status == StatusRunning {
					return true
				}
				status := FlowStatus("gone")
				if f != nil {
					status = f.Status
				}
				v.t.Logf("resume request %s (acknowledged): flow %s is %s, resumed %d times", req.ID, id, status, resumed)
				return false
			})
			select {
			case <-load.Done():
			case <-time.After(25 * time.Millisecond):
			}
		}
	}()
	// The bridge hands the requests to their flows, through the drain.
	bridge := NewWaitEngine(m, WithLogger(quietLogger()))
	workers.Add(1)
	go func() {
		defer workers.Done()
		_ = bridge.RunResumeBridge(work)
	}()

	// The engine resumes due timers (and expires leases) throughout.
	engine := NewWaitEngine(m, WithLogger(quietLogger()))
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = engine.Run(load, 100*time.Millisecond)
	}()
	// A Claim parked on an empty queue across the switch: it must get a
	// flow made after the switch within its wait.
	parked := make(chan time.Time, 1)
	var parkedFlow atomic.Value
	wg.Add(1)
	go func() {
		defer wg.Done()
		for load.Err() == nil {
			f, _, err := m.Claim(load, "parked", "parked", time.Minute, WithClaimWait(30*time.Second))
			if f != nil {
				if want, _ := parkedFlow.Load().(uuid.UUID); f.ID == want && (err == nil || errors.Is(err, ErrNotReplicated)) {
					parked <- time.Now()
					return
				}
			}
			if err != nil {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()

	time.Sleep(failoverWarmup)
	for _, l := range setup.links {
		l.setLag(failoverLag)
	}
	time.Sleep(time.Until(killAt))
	killed.Store(time.Now().UnixNano())
	setup.master.kill()
	var switchAt time.Time
	select {
	case switchAt = <-switched:
	case <-time.After(30 * time.Second):
		t.Fatal("no +switch-master within 30 s of the kill")
	}
	switchNs.CompareAndSwap(0, switchAt.UnixNano())
	for _, l := range setup.links {
		l.setLag(0)
	}
	// A flow for the parked Claim, made once the new master takes writes.
	// Its id is known before it exists (an idempotency key), since the
	// parked Claim may take it before CreateMirrored returns; a create
	// retried after an error makes the same flow.
	pin := in("parked")
	pin.IdempotencyKey = "parked-after-switch"
	parkedFlow.Store(m.store.IdempotentFlowID(pin.IdempotencyKey))
	var pf *Flow
	for give := time.Now().Add(30 * time.Second); pf == nil; {
		f, err := m.CreateMirrored(ctx, pin)
		switch {
		case f != nil && (err == nil || errors.Is(err, ErrNotReplicated)):
			pf = f
		case time.Now().After(give):
			t.Fatalf("the new master takes no create 30 s after the switch: %v", err)
		default:
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(failoverAfter)
	stopLoad()
	wg.Wait()
	var parkedAt time.Time
	select {
	case parkedAt = <-parked:
	default:
	}
	// Drain: the workers finish every created flow still queued.
	drainEnd := time.Now().Add(failoverDrain)
	for time.Now().Before(drainEnd) {
		page, err := m.ListByStatusPage(ctx, StatusRunning, WithLimit(maxListLimit))
		if err == nil {
			left := 0
			for _, f := range page.Flows {
				if f.ControllerID == "work" {
					left++
				}
			}
			resumesAcked.Range(func(k, _ any) bool {
				if f, err := m.Get(ctx, k.(uuid.UUID)); err == nil && f.Status == StatusWaiting {
					left++
				}
				return true
			})
			if left == 0 {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	stopWork()
	workers.Wait()

	// The account.
	fig := failoverFigures{acked: map[string]int{}, lost: map[string]int{}, unconfirmed: led.unconfirm, failed: led.failed}
	fig.switchAfterKill = switchAt.Sub(time.Unix(0, killed.Load()))
	if b := backAt.Load(); b != 0 {
		fig.unavailable = time.Unix(0, b).Sub(time.Unix(0, killed.Load()))
	}
	switched0 := time.Unix(0, switchNs.Load())
	if c := firstClaimAfterSwitch.Load(); c != 0 {
		fig.firstClaim = time.Unix(0, c).Sub(switched0)
	}
	if !parkedAt.IsZero() {
		fig.parkedClaim = parkedAt.Sub(switched0)
		fig.parkedClaimWaited = true
	}
	view := &flowView{t: t, m: m, flows: map[uuid.UUID]*Flow{}, events: map[uuid.UUID][]*FlowEvent{}}
	for kind, checks := range led.checks {
		fig.acked[kind] = len(checks)
		for _, ok := range checks {
			if !ok(view) {
				fig.lost[kind]++
			}
		}
	}
	for _, by := range led.finishes {
		if len(by) > 1 {
			fig.finishedTwice++
		}
	}
	// Stuck: a created flow that is neither finished nor claimable.
	created.Range(func(k, _ any) bool {
		f := view.flow(k.(uuid.UUID))
		if f != nil && f.Status != StatusFinished {
			fig.stuck++
		}
		return true
	})
	for _, id := range timers {
		n := 0
		for _, ev := range view.log(id) {
			if ev.Kind == EventResumed {
				n++
			}
		}
		if n == 1 {
			fig.timersResumed++
		} else {
			fig.timersNotOnce++
		}
	}
	// A compare-and-set on a flow read before the failover: refused
	// where that read was lost (IfRevisionOf compares the epoch).
	lastAcked.Range(func(k, v any) bool {
		id, acked := k.(uuid.UUID), v.(ackedUpdate)
		cur := view.flow(id)
		if _, kept := stateOf(t, cur)[acked.key]; kept {
			return true // not lost
		}
		fig.staleCAS++
		if cur.Revision >= acked.f.Revision {
			fig.revisionReused++ // the new master handed its revision out again
		}
		if _, err := m.UpdateState(ctx, id, nil, "", IfRevisionOf(acked.f)); !errors.Is(err, ErrRevisionMismatch) {
			fig.staleCASAccepted++
		}
		return true
	})
	requireVerifyClean(t, m)
	for kind, err := range led.firstErr {
		t.Logf("first %s error: %v", kind, err)
	}
	return fig
}

// TestSentinelFailover kills the master of a Sentinel setup under load,
// its replicas 300 ms behind, twice: with WithReplicaAcks no acknowledged
// write of any kind is lost, no flow is stuck, no finish is acknowledged
// twice, every due timer resumes once and Claim follows the new master;
// without it the lost writes are counted (the README's figures).
func TestSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("a failover drill: about 40 s")
	}
	t.Run("replica-acks", func(t *testing.T) {
		fig := runFailover(t, WithReplicaAcks(1, time.Second))
		t.Logf("with WithReplicaAcks(1, 1s): %v", fig)
		if fig.totalLost() != 0 {
			t.Errorf("acknowledged writes lost: %v", fig.lost)
		}
		for _, kind := range []string{"update", "create", "claim", "finish", "resume"} {
			if fig.acked[kind] == 0 {
				t.Errorf("no %s acknowledged: the drill did not exercise it", kind)
			}
		}
		if fig.finishedTwice != 0 || fig.stuck != 0 || fig.timersNotOnce != 0 {
			t.Errorf("finished twice %d, stuck %d, timers not resumed once %d", fig.finishedTwice, fig.stuck, fig.timersNotOnce)
		}
		if fig.firstClaim == 0 || fig.firstClaim > failoverClaimFor {
			t.Errorf("no claim of a new flow within the claim wait (%s) of the switch", failoverClaimFor)
		}
		if !fig.parkedClaimWaited {
			t.Errorf("the Claim parked across the switch never got its flow")
		}
		if fig.staleCASAccepted != 0 {
			t.Errorf("a compare-and-set on a lost update was accepted on %d flows", fig.staleCASAccepted)
		}
	})
	t.Run("async", func(t *testing.T) {
		fig := runFailover(t)
		t.Logf("without replica acks: %v", fig)
		if fig.lost["update"] == 0 {
			t.Errorf("no acknowledged update lost with replicas %s behind: the drill did not lag them", failoverLag)
		}
		if fig.staleCASAccepted != 0 {
			t.Errorf("a compare-and-set on a lost update was accepted on %d flows", fig.staleCASAccepted)
		}
	})
}

// TestClaimFollowsASentinelSwitch: a Claim waiting on a subscription to
// a master that stays up but is no longer the master (a coordinated
// failover, then the old master cut off as a stale master of its own)
// still gets a flow made on the new master within its wait: once the
// client dials the new master, the Manager subscribes again there and
// the waiting Claim looks again. Before, it waited on the stale master
// for its whole claim wait.
func TestClaimFollowsASentinelSwitch(t *testing.T) {
	setup := startSentinelSetup(t)
	switched := setup.watchSwitch(t)
	store, err := NewRedisStore(setup.failoverClient(t), WithPrefix("follow"))
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(store)
	defer m.Close()
	ctx := context.Background()
	in := CreateManagedInput{ControllerID: "parked", Goal: "g", OwnerSessionKey: "o"}
	must(t, try(m.CreateManaged(ctx, CreateManagedInput{ControllerID: "other", Goal: "g", OwnerSessionKey: "o"})))
	type claimed struct {
		f   *Flow
		err error
	}
	got := make(chan claimed, 1)
	// The claim wait (1 min) is far longer than the context's, which
	// bounds the test.
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	go func() {
		f, _, err := m.Claim(cctx, "parked", "w", time.Minute, WithClaimWait(time.Minute))
		got <- claimed{f, err}
	}()
	var h *readyHub
	for h == nil {
		m.hubMu.Lock()
		h = m.hubs["parked"]
		m.hubMu.Unlock()
		select {
		case r := <-got:
			t.Fatalf("the Claim returned before it waited: %v %v", r.f, r.err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	h.mu.Lock()
	before := h.subs[0]
	h.mu.Unlock()
	sc := redis.NewSentinelClient(&redis.Options{Addr: setup.sentinels[0].Addr()})
	defer sc.Close()
	if err := sc.Failover(ctx, sentinelMaster).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-switched:
	case <-time.After(30 * time.Second):
		t.Fatal("no +switch-master within 30 s of SENTINEL FAILOVER")
	}
	// The old master stays up, a master of its own that nobody writes
	// to, until the Sentinels turn it into a replica again.
	old := setup.master.client(t)
	if err := old.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	var f *Flow
	for give := time.Now().Add(30 * time.Second); f == nil; {
		f, err = m.CreateMirrored(ctx, in)
		if err != nil {
			if time.Now().After(give) {
				t.Fatalf("the new master takes no create 30 s after the switch: %v", err)
			}
			f = nil
			time.Sleep(50 * time.Millisecond)
		}
	}
	r := <-got
	if r.err != nil || r.f == nil || r.f.ID != f.ID {
		t.Fatalf("the Claim waiting across the switch: %v %v, want flow %s", r.f, r.err, f.ID)
	}
	// And the Manager subscribed again.
	h.mu.Lock()
	after := h.subs[0]
	h.mu.Unlock()
	if after == before {
		t.Fatal("the subscription was not made again after the switch")
	}
}
