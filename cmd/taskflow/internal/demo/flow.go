package demo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

// createAndStart creates the flow and starts it, which puts it on the
// ready queue of the run's controller (o.mu held).
func (d *demo) createAndStart(ctx context.Context, w *worker, o *outcome) error {
	p := o.plan
	f, err := w.m.CreateManaged(ctx, taskflow.CreateManagedInput{
		ControllerID:    d.controller(),
		Goal:            fmt.Sprintf("demo flow #%d: %s", p.n, planGoals[p.kind]),
		OwnerSessionKey: fmt.Sprintf("agent:demo-worker-%d:session:%s", w.n, d.session),
		RequesterOrigin: "taskflow-demo",
		CurrentStep:     "init",
		State:           map[string]any{"plan": p.kind, "steps_done": 0},
	})
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	o.id = f.ID
	d.progress.set(p.n-1, f.Status)
	d.tracker.register(o)
	if _, err := w.m.StartRunning(ctx, o.id); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	o.mutations++
	return nil
}

var planGoals = map[string]string{
	"finish":   "summarise the inbox and file the report",
	"timer":    "retry the upload after a back-off",
	"external": "wait for the payment webhook, then ship",
	"manual":   "wait for a human approval, then publish",
	"fail":     "sync the calendar (the upstream refuses)",
	"cancel":   "draft a reply (the user changes their mind)",
}

// flowRun is one piece of work on a claimed flow: every mutation is made
// under the lease.
type flowRun struct {
	d     *demo
	w     *worker
	o     *outcome
	lease *taskflow.Lease
}

// drive does the next piece of a claimed flow's plan and records what
// happened in its outcome.
func (d *demo) drive(ctx context.Context, w *worker, f *taskflow.Flow, l *taskflow.Lease) {
	o := d.tracker.lookup(f.ID)
	if o == nil {
		// Not possible: the run's controller id is its own. Leave it
		// alone (its lease runs out) rather than pass it around.
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.claims++
	if o.err != nil {
		return // given up: leave it alone
	}
	r := &flowRun{d: d, w: w, o: o, lease: l}
	err := r.piece(ctx)
	switch {
	case err == nil:
	case errors.Is(err, taskflow.ErrLeaseLost):
		// The lease ran out under the worker: nothing was written, and
		// the next worker to claim the flow goes on from where it is.
		w.lost++
	case ctx.Err() != nil:
	default:
		d.fail(o, err)
	}
}

// piece runs the flow from where it is to its next stop: the plan's end,
// a wait, a handoff or a stall.
func (r *flowRun) piece(ctx context.Context) error {
	o, p := r.o, r.o.plan
	if o.waits > o.resumes {
		// It waited and is running again: the plan's actor resumed it.
		o.resumes++
		o.mutations++
		r.d.progress.resumed()
	}
	if o.resumes > 0 {
		if err := r.steps(ctx, p.totalSteps()); err != nil {
			return err
		}
		return r.finish(ctx)
	}
	if o.peer == nil && o.peerNote == "" {
		o.peer = r.askPeer(ctx)
	}
	for o.stepsDone < p.steps {
		if err := r.steps(ctx, o.stepsDone+1); err != nil {
			return err
		}
		if p.stall && !o.stalled {
			return r.stall(ctx)
		}
		if p.handoff && !o.handedOff {
			return r.handoff(ctx)
		}
	}
	if err := r.awaitPeer(ctx); err != nil {
		return err
	}
	switch p.kind {
	case "finish":
		return r.finish(ctx)
	case "fail":
		return r.mutate(r.w.m.Fail(ctx, o.id, "demo: the upstream service said no", r.leased()))
	case "cancel":
		return r.waitAndCancel(ctx)
	}
	return r.wait(ctx)
}

// leased is the option that fences a mutation with the lease.
func (r *flowRun) leased() taskflow.MutationOption { return taskflow.WithLease(r.lease) }

// mutate counts one persisted mutation.
func (r *flowRun) mutate(_ *taskflow.Flow, err error) error {
	if err != nil {
		return err
	}
	r.o.mutations++
	return nil
}

// steps runs the steps after the last one done, up to last: observe it
// running, bump steps_done and the current step under the lease, observe
// it succeeded.
func (r *flowRun) steps(ctx context.Context, last int) error {
	for s := r.o.stepsDone + 1; s <= last; s++ {
		runID := fmt.Sprintf("run-%d", s)
		task := fmt.Sprintf("step %d of %s", s, r.o.plan.kind)
		if err := r.observe(ctx, runID, task, taskflow.StepRunning); err != nil {
			return err
		}
		f, err := r.w.m.UpdateState(ctx, r.o.id, map[string]any{"steps_done": s}, fmt.Sprintf("step-%d", s), r.leased())
		if err := r.mutate(f, err); err != nil {
			return fmt.Errorf("step %d: %w", s, err)
		}
		r.o.stepsDone = s
		if err := r.observe(ctx, runID, task, taskflow.StepSucceeded); err != nil {
			return err
		}
	}
	return nil
}

func (r *flowRun) observe(ctx context.Context, runID, task string, st taskflow.StepStatus) error {
	_, err := r.w.m.RecordStepObservation(ctx, taskflow.StepObservation{
		FlowID: r.o.id, RunID: runID, Task: task, Status: st,
		Result: map[string]any{"worker": r.w.n},
	})
	if err != nil {
		return fmt.Errorf("observe %s: %w", runID, err)
	}
	r.o.observed++
	return nil
}

// handoff gives the flow back mid-way: another worker (or this one)
// claims it and goes on.
func (r *flowRun) handoff(ctx context.Context) error {
	if err := r.w.m.Release(ctx, r.lease); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	r.o.handedOff = true
	r.o.releases++
	r.w.releases++
	return nil
}

// minLease is the shortest lease Manager.Extend takes.
const minLease = 100 * time.Millisecond

// stall plays a worker that hangs: its lease is cut to the minimum and it
// stops; an engine's tick expires the lease and puts the flow back on the
// ready queue. When it wakes after the expiry it tries the write it was
// about to make, which the lease must fence.
func (r *flowRun) stall(ctx context.Context) error {
	l, err := r.w.m.Extend(ctx, r.lease, minLease)
	if err != nil {
		return fmt.Errorf("extend: %w", err)
	}
	o, w, d := r.o, r.w, r.d
	o.stalled = true
	w.stalls++
	next := o.stepsDone + 1
	d.later.Add(1)
	go func() {
		defer d.later.Done()
		t := time.NewTimer(time.Until(l.ExpiresAt) + 20*time.Millisecond)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		_, err := w.m.UpdateState(ctx, o.id, map[string]any{"steps_done": next}, fmt.Sprintf("step-%d", next), taskflow.WithLease(l))
		switch {
		case errors.Is(err, taskflow.ErrLeaseLost):
			o.fenced++
		case err == nil:
			o.mutations++
			d.fail(o, fmt.Errorf("a write under lease %s accepted after it expired at %s", l.Token, l.ExpiresAt.Format(time.RFC3339Nano)))
		case ctx.Err() == nil:
			d.fail(o, fmt.Errorf("stale write: %w", err))
		}
	}()
	return nil
}

// askPeer has the next worker write a note into the flow while this one
// runs its steps.
func (r *flowRun) askPeer(ctx context.Context) chan peerReply {
	reply := make(chan peerReply, 1)
	peer := r.d.workers[r.w.n%len(r.d.workers)]
	select {
	case peer.peer <- peerReq{id: r.o.id, reply: reply}:
	case <-ctx.Done():
		reply <- peerReply{err: ctx.Err()}
	}
	return reply
}

// awaitPeer waits for the peer's note, if one is pending.
func (r *flowRun) awaitPeer(ctx context.Context) error {
	if r.o.peer == nil {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case rep := <-r.o.peer:
		r.o.peer = nil
		if rep.err != nil {
			return fmt.Errorf("peer note: %w", rep.err)
		}
		r.o.mutations++
		r.o.peerNote = rep.note
		return nil
	}
}

func (r *flowRun) finish(ctx context.Context) error {
	return r.mutate(r.w.m.Finish(ctx, r.o.id, map[string]any{"result": "done"}, r.leased()))
}

// wait parks the flow on its planned wait (which ends the lease) and has
// the right actor resume it: an engine's tick for a timer, the resume
// bridge for an external event, the operator for a manual wait. The
// resumed flow goes back on the ready queue.
func (r *flowRun) wait(ctx context.Context) error {
	o, p := r.o, r.o.plan
	var cond taskflow.WaitCondition
	corr := fmt.Sprintf("payment-%d-%s", p.n, o.id.String()[:8])
	switch p.kind {
	case "timer":
		cond = taskflow.WaitTimer(time.Now().Add(p.delay))
	case "external":
		cond = taskflow.WaitExternalEvent(topic, corr)
	case "manual":
		cond = taskflow.WaitManual()
	}
	if err := r.mutate(r.w.m.SetWaiting(ctx, o.id, cond, r.leased())); err != nil {
		return fmt.Errorf("wait: %w", err)
	}
	o.waits++
	switch p.kind {
	case "external":
		r.d.after(ctx, o, p.delay, "publish", func(m *taskflow.Manager) error {
			req := taskflow.ResumeRequest{Topic: topic, CorrelationID: corr, Payload: map[string]any{"paid": true}}
			if p.n%2 == 0 { // half addressed to the flow, half by correlation id only
				req.FlowID = o.id
			}
			return m.PublishResume(ctx, req)
		}, nil)
	case "manual":
		r.d.after(ctx, o, p.delay, "manual resume", func(m *taskflow.Manager) error {
			_, err := m.Resume(ctx, o.id, nil)
			return err
		}, nil)
	}
	return nil
}

// waitAndCancel parks the flow on a manual wait; the operator requests a
// cancel and an engine's tick cancels the flow.
func (r *flowRun) waitAndCancel(ctx context.Context) error {
	o := r.o
	if err := r.mutate(r.w.m.SetWaiting(ctx, o.id, taskflow.WaitManual(), r.leased())); err != nil {
		return fmt.Errorf("wait: %w", err)
	}
	o.waits++
	r.d.after(ctx, o, o.plan.delay, "request cancel", func(m *taskflow.Manager) error {
		_, err := m.RequestCancel(ctx, o.id)
		return err
	}, func() { o.mutations++ })
	return nil
}

// idOrNil names a flow in messages.
func idOrNil(id uuid.UUID) string {
	if id == uuid.Nil {
		return "(not created)"
	}
	return id.String()
}
