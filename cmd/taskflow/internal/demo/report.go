package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
	"github.com/taskflow-dev/taskflow/cmd/taskflow/internal/clitext"
	"github.com/taskflow-dev/taskflow/internal/plainjson"
)

// progress is what the workers know of their flows, for the live line.
type progress struct {
	mu      sync.Mutex
	status  []taskflow.FlowStatus
	resumes int
	claims  int
}

func (p *progress) init(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status = make([]taskflow.FlowStatus, n)
}

func (p *progress) set(i int, st taskflow.FlowStatus) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status[i] = st
}

func (p *progress) resumed() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resumes++
}

func (p *progress) claimed() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.claims++
}

// line summarises the progress in one line.
func (p *progress) line(elapsed time.Duration) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	counts := map[taskflow.FlowStatus]int{}
	done := 0
	for _, st := range p.status {
		counts[st]++
		if st.IsTerminal() {
			done++
		}
	}
	s := fmt.Sprintf("%d/%d flows done:", done, len(p.status))
	for _, st := range taskflow.Statuses() {
		s += fmt.Sprintf(" %s %d", st, counts[st])
	}
	return s + fmt.Sprintf("  claims %d  resumes %d  %.1fs", p.claims, p.resumes, elapsed.Seconds())
}

// showProgress prints the progress until the returned stop is called: one
// line updated in place on a terminal, a plain line a second otherwise,
// nothing with --json.
func (d *demo) showProgress(total int) (stop func()) {
	if d.cfg.JSON {
		return func() {}
	}
	live := clitext.IsTerminal(d.cfg.Out)
	period := time.Second
	if live {
		period = 100 * time.Millisecond
	}
	fmt.Fprintf(d.cfg.Out, "demo: %d flows, %d workers, %d wait engines on %s\n", total, len(d.workers), len(d.engines), d.where())
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				d.printProgress(live)
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		d.printProgress(live)
		if live {
			clitext.StatusLine{W: d.cfg.Out}.Done()
		}
	}
}

func (d *demo) printProgress(live bool) {
	line := d.progress.line(time.Since(d.start))
	if live {
		clitext.StatusLine{W: d.cfg.Out}.Update(line)
		return
	}
	fmt.Fprintln(d.cfg.Out, line)
}

func (d *demo) where() string {
	if d.target.embedded {
		return fmt.Sprintf("an embedded Redis (prefix %s)", d.target.prefix)
	}
	return fmt.Sprintf("%s (prefix %s)", clitext.RedactURL(d.target.url), d.target.prefix)
}

// audited is one flow as stored after the demo, with what the demo did.
type audited struct {
	o      *outcome
	f      *taskflow.Flow
	events []*taskflow.FlowEvent
	err    error
}

// Check is one invariant's verdict.
type Check struct {
	// Name says the invariant.
	Name string `json:"name"`
	// Pass is its verdict.
	Pass bool `json:"pass"`
	// Detail says how many flows break it and the first of them.
	Detail string `json:"detail,omitempty"`
}

// Report is the demo's summary, and its JSON output with --json.
type Report struct {
	// Flows, Workers and Engines are the fleet's size.
	Flows   int `json:"flows"`
	Workers int `json:"workers"`
	Engines int `json:"engines"`
	// Embedded is set when the demo played on an embedded Redis.
	Embedded bool `json:"embedded"`
	// Prefix is the flow space it played in.
	Prefix string `json:"prefix"`
	// ElapsedMs is how long the fleet ran, in milliseconds.
	ElapsedMs int64 `json:"elapsed_ms"`
	// ByStatus counts the flows by final status ("missing": unreadable).
	ByStatus map[string]int `json:"by_status"`
	// TotalRevisions and TotalEvents sum every flow's revision and events.
	TotalRevisions int64 `json:"total_revisions"`
	TotalEvents    int   `json:"total_events"`
	// ResumesByKind counts the resumed events by wait: timer, external,
	// manual.
	ResumesByKind map[string]int `json:"resumes_by_kind"`
	// CancelledByTick counts the cancels a tick carried out.
	CancelledByTick int `json:"cancelled_by_tick"`
	// Claims counts the successful claims, ClaimsByWorker by worker id.
	Claims         int            `json:"claims"`
	ClaimsByWorker map[string]int `json:"claims_by_worker"`
	// Released counts the flows handed back mid-way.
	Released int `json:"released"`
	// Stalled counts the stalled workers, LeasesExpired the leases the
	// engines expired, StaleFenced the late writes the lease refused.
	Stalled       int `json:"stalled"`
	LeasesExpired int `json:"leases_expired"`
	StaleFenced   int `json:"stale_writes_fenced"`
	// LeasesLost counts the leases that ran out under a working worker.
	LeasesLost int `json:"leases_lost"`
	// EngineTicks counts the engines' ticks, Bridge sums their resume
	// bridges' counters.
	EngineTicks int                  `json:"engine_ticks"`
	Bridge      taskflow.BridgeStats `json:"bridge"`
	// Checks are the invariants' verdicts; Pass is set when all passed.
	Checks []Check `json:"checks"`
	Pass   bool    `json:"pass"`
}

// report reads every flow back, checks the invariants and prints the
// summary. It returns an error when a check fails.
func (d *demo) report(ctx context.Context, outcomes []*outcome) error {
	elapsed := time.Since(d.start)
	flows := d.audit(ctx, outcomes)
	rep := d.summarise(flows)
	rep.ElapsedMs = elapsed.Milliseconds()
	rep.Checks = runChecks(flows, d.fleetErrors())
	rep.Pass = true
	for _, ch := range rep.Checks {
		rep.Pass = rep.Pass && ch.Pass
	}
	if d.cfg.JSON {
		if err := plainjson.Encode(d.cfg.Out, rep, true); err != nil {
			return err
		}
	} else {
		d.printReport(rep, elapsed)
	}
	if !rep.Pass {
		return errors.New("demo: an invariant failed (see FAIL above)")
	}
	return nil
}

// audit reads each flow and its whole audit log with a fresh client.
func (d *demo) audit(ctx context.Context, outcomes []*outcome) []audited {
	out := make([]audited, len(outcomes))
	for i, o := range outcomes {
		a := audited{o: o}
		if o.id != uuid.Nil {
			a.f, a.err = d.auditor.Get(ctx, o.id)
			if a.err == nil {
				limit := int(a.f.Revision) + o.observed + 2*o.claims + o.releases + 100
				a.events, a.err = d.auditor.ListEvents(ctx, o.id, limit)
			}
		}
		out[i] = a
	}
	return out
}

func (d *demo) summarise(flows []audited) Report {
	rep := Report{
		Flows: len(flows), Workers: len(d.workers), Engines: len(d.engines),
		Embedded: d.target.embedded, Prefix: d.target.prefix,
		ByStatus: map[string]int{}, ResumesByKind: map[string]int{"timer": 0, "external": 0, "manual": 0},
		ClaimsByWorker: map[string]int{},
	}
	for _, w := range d.workers {
		rep.ClaimsByWorker[w.id] = w.claims
		rep.Claims += w.claims
		rep.Released += w.releases
		rep.Stalled += w.stalls
		rep.LeasesLost += w.lost
	}
	for _, a := range flows {
		if a.f == nil {
			rep.ByStatus["missing"]++
			continue
		}
		rep.ByStatus[string(a.f.Status)]++
		rep.TotalRevisions += a.f.Revision
		rep.TotalEvents += len(a.events)
		if a.o.plan.resumes() {
			rep.ResumesByKind[a.o.plan.kind] += countKind(a.events, taskflow.EventResumed)
		}
		if a.o.plan.kind == "cancel" {
			rep.CancelledByTick += countKind(a.events, taskflow.EventCancelled)
		}
		rep.StaleFenced += a.o.fenced
	}
	d.engStats.mu.Lock()
	rep.EngineTicks, rep.Bridge = d.engStats.ticks, d.engStats.bridge
	rep.LeasesExpired = d.engStats.leasesExpired
	d.engStats.mu.Unlock()
	return rep
}

func countKind(events []*taskflow.FlowEvent, kind taskflow.EventKind) int {
	n := 0
	for _, e := range events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// fleetErrors lists what went wrong outside any one flow.
func (d *demo) fleetErrors() []string {
	var out []string
	for _, w := range d.workers {
		if w.claimErrs > 0 {
			out = append(out, fmt.Sprintf("%s: %d failed claims; the first: %v", w.id, w.claimErrs, w.claimErr))
		}
	}
	if d.stuck {
		out = append(out, fmt.Sprintf("no flow moved for %s; gave up waiting", idleLimit))
	}
	return out
}

// runChecks verifies the invariants over every flow.
func runChecks(flows []audited, fleet []string) []Check {
	noError := checkAll(flows, "every flow was driven without an unexpected error", func(a audited) string {
		if a.o.err != nil {
			return a.o.err.Error()
		}
		return ""
	})
	if len(fleet) > 0 {
		noError.Pass = false
		noError.Detail = strings.TrimPrefix(noError.Detail+"; "+strings.Join(fleet, "; "), "; ")
	}
	return []Check{
		noError,
		checkAll(flows, "every flow is terminal", func(a audited) string {
			if a.f == nil {
				return fmt.Sprintf("cannot read it: %v", a.err)
			}
			if !a.f.Status.IsTerminal() {
				return "status " + string(a.f.Status)
			}
			return ""
		}),
		checkAll(flows, "every flow ended as planned (finished, failed or cancelled)", func(a audited) string {
			if a.f != nil && a.f.Status != a.o.plan.want() {
				return fmt.Sprintf("%s plan ended %s, want %s", a.o.plan.kind, a.f.Status, a.o.plan.want())
			}
			return ""
		}),
		checkAll(flows, "no lost update: each state and revision match what the demo did", lostUpdate),
		checkAll(flows, "audit log complete: events = revision + 1 + step observations + claims + releases + expired leases", auditComplete),
		checkAll(flows, "exactly one resumed event per resume the demo caused", func(a audited) string {
			if n := countKind(a.events, taskflow.EventResumed); a.f != nil && n != a.o.resumes {
				return fmt.Sprintf("%d resumed events, want %d", n, a.o.resumes)
			}
			return ""
		}),
		checkAll(flows, "no two lease holders interleave on a flow", leaseOrder),
	}
}

// auditComplete compares the number of a flow's events with what the
// demo did: one per mutation, the created event, one per step
// observation, claim and release (neither bumps the revision), and one
// per lease an engine expired, counted from the log (the engines do not
// say which flows they were).
func auditComplete(a audited) string {
	if a.f == nil {
		return ""
	}
	expired := countKind(a.events, taskflow.EventLeaseExpired)
	want := int(a.o.mutations) + 1 + a.o.observed + a.o.claims + a.o.releases + expired
	if len(a.events) != want {
		return fmt.Sprintf("%d events, want %d (revision %d, created, %d observations, %d claims, %d releases, %d expired leases); %d claimed and %d released events in the log",
			len(a.events), want, a.o.mutations, a.o.observed, a.o.claims, a.o.releases, expired,
			countKind(a.events, taskflow.EventClaimed), countKind(a.events, taskflow.EventReleased))
	}
	return ""
}

// leaseOrder walks a flow's events oldest first: a lease begins with its
// claimed event and ends with a released or lease_expired event, or with
// the mutation that leaves running (a wait, finish, fail or cancel). No
// event may name a lease while another is live, nor one that has ended.
func leaseOrder(a audited) string {
	live := ""
	ended := map[string]bool{}
	for i := len(a.events) - 1; i >= 0; i-- {
		e := a.events[i]
		token := e.Lease
		if e.Kind == taskflow.EventLeaseExpired {
			var p struct {
				Lease string `json:"lease"`
			}
			if err := json.Unmarshal(e.Payload, &p); err != nil || p.Lease == "" {
				return fmt.Sprintf("event %s (lease_expired) names no lease: %s", e.ID, clitext.CompactJSON(e.Payload))
			}
			token = p.Lease
		}
		if token != "" {
			switch {
			case ended[token]:
				return fmt.Sprintf("event %s (%s) is made under lease %s, which had ended", e.ID, e.Kind, clitext.ShortToken(token))
			case live != "" && token != live:
				return fmt.Sprintf("event %s (%s) is made under lease %s while lease %s is live", e.ID, e.Kind, clitext.ShortToken(token), clitext.ShortToken(live))
			case live == "" && e.Kind != taskflow.EventClaimed:
				return fmt.Sprintf("event %s (%s) is made under lease %s, which was never claimed", e.ID, e.Kind, clitext.ShortToken(token))
			}
			live = token
		}
		switch e.Kind {
		case taskflow.EventReleased, taskflow.EventLeaseExpired, taskflow.EventWaiting,
			taskflow.EventFinished, taskflow.EventFailed, taskflow.EventCancelled:
			if live != "" {
				ended[live] = true
				live = ""
			}
		}
	}
	return ""
}

// lostUpdate compares a flow's state and revision with the demo's record.
func lostUpdate(a audited) string {
	if a.f == nil {
		return ""
	}
	var state map[string]json.RawMessage
	if err := json.Unmarshal(a.f.State, &state); err != nil {
		return "state is not a JSON object"
	}
	if got, want := string(state["steps_done"]), strconv.Itoa(a.o.stepsDone); got != want {
		return fmt.Sprintf("steps_done %s, want %s", got, want)
	}
	if a.o.peerNote != "" && string(state["peer_note"]) != strconv.Quote(a.o.peerNote) {
		return fmt.Sprintf("peer_note %s, want %q", state["peer_note"], a.o.peerNote)
	}
	if a.f.Revision != a.o.mutations {
		return fmt.Sprintf("revision %d, want %d", a.f.Revision, a.o.mutations)
	}
	return ""
}

// checkAll applies bad to every flow: "" means fine.
func checkAll(flows []audited, name string, bad func(audited) string) Check {
	failed, first := 0, ""
	for _, a := range flows {
		if a.o == nil {
			failed++
			continue
		}
		if why := bad(a); why != "" {
			if failed == 0 {
				first = fmt.Sprintf("flow #%d %s: %s", a.o.plan.n, idOrNil(a.o.id), why)
			}
			failed++
		}
	}
	if failed == 0 {
		return Check{Name: name, Pass: true}
	}
	return Check{Name: name, Detail: fmt.Sprintf("%d of %d flows; the first: %s", failed, len(flows), first)}
}

func (d *demo) printReport(rep Report, elapsed time.Duration) {
	w := d.cfg.Out
	fmt.Fprintf(w, "\nsummary (%d flows in %.2fs)\n", rep.Flows, elapsed.Seconds())
	tw := clitext.NewTable(w)
	for _, st := range append(taskflow.Statuses(), "missing") {
		if n := rep.ByStatus[string(st)]; n > 0 {
			fmt.Fprintf(tw, "  %s\t%d\n", st, n)
		}
	}
	fmt.Fprintf(tw, "  revisions\t%d\t(all flows)\n", rep.TotalRevisions)
	fmt.Fprintf(tw, "  events\t%d\t(all flows)\n", rep.TotalEvents)
	fmt.Fprintf(tw, "  resumed: timer\t%d\tby the engines' ticks\n", rep.ResumesByKind["timer"])
	fmt.Fprintf(tw, "  resumed: external\t%d\tthrough the resume bridge (%d messages handled)\n", rep.ResumesByKind["external"], rep.Bridge.Handled)
	fmt.Fprintf(tw, "  resumed: manual\t%d\tby the operator\n", rep.ResumesByKind["manual"])
	fmt.Fprintf(tw, "  cancelled by a tick\t%d\tafter the operator's cancel request\n", rep.CancelledByTick)
	fmt.Fprintf(tw, "  claims\t%d\t%s\n", rep.Claims, claimsByWorker(rep.ClaimsByWorker))
	fmt.Fprintf(tw, "  handed back\t%d\treleased mid-way, claimed again by any worker\n", rep.Released)
	fmt.Fprintf(tw, "  stalled workers\t%d\t%d leases expired by the engines' ticks, %d stale writes fenced\n",
		rep.Stalled, rep.LeasesExpired, rep.StaleFenced)
	if rep.LeasesLost > 0 {
		fmt.Fprintf(tw, "  leases lost\t%d\trun out under a working worker; the next claimer went on\n", rep.LeasesLost)
	}
	fmt.Fprintf(tw, "  engine ticks\t%d\t(%d engines, every %s)\n", rep.EngineTicks, rep.Engines, engineTick)
	tw.Flush()
	fmt.Fprintln(w, "\nchecks")
	printChecks(w, rep.Checks)
	d.printHint(w)
}

// claimsByWorker lists the claims per worker, in worker order.
func claimsByWorker(m map[string]int) string {
	var parts []string
	for i := 1; i <= len(m); i++ {
		id := fmt.Sprintf("worker-%d", i)
		parts = append(parts, fmt.Sprintf("%s %d", id, m[id]))
	}
	return strings.Join(parts, ", ")
}

func printChecks(w io.Writer, checks []Check) {
	for _, ch := range checks {
		verdict := "PASS"
		if !ch.Pass {
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "  %s  %s\n", verdict, ch.Name)
		if ch.Detail != "" {
			fmt.Fprintf(w, "        %s\n", ch.Detail)
		}
	}
}

// printHint tells where the flows are, or that they are gone.
func (d *demo) printHint(w io.Writer) {
	if d.target.embedded {
		fmt.Fprintln(w, "\nThe embedded Redis is gone with its flows; run with --redis URL to keep them.")
		return
	}
	// Quoted for a shell: a cluster URL holds ? and &.
	conn := fmt.Sprintf("--redis %s --prefix %s", clitext.ShellQuote(clitext.RedactURL(d.target.url)), clitext.ShellQuote(d.target.prefix))
	if d.cfg.Shards != taskflow.DefaultShards {
		conn += fmt.Sprintf(" --shards %d", d.cfg.Shards)
	}
	fmt.Fprintf(w, "\nThe flows stay in Redis; look at them with:\n")
	fmt.Fprintf(w, "  taskflow list %s\n", conn)
	fmt.Fprintf(w, "  taskflow list --status failed,cancelled %s\n", conn)
	fmt.Fprintf(w, "  taskflow show <id> %s\n", conn)
}
