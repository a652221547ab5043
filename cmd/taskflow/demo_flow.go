package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/taskflow-dev/taskflow"
)

// flowRun drives one demo flow with its worker's manager and records
// what it did in its outcome.
type flowRun struct {
	d *demo
	w *demoWorker
	o *outcome
}

// play drives the flow from create to its planned end.
func (r *flowRun) play(ctx context.Context) error {
	p := r.o.plan
	if err := r.create(ctx); err != nil {
		return err
	}
	if err := r.mutate(r.w.m.StartRunning(ctx, r.o.id)); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	peer := r.askPeer(ctx)
	if err := r.steps(ctx, 1, p.steps); err != nil {
		return err
	}
	if err := r.awaitPeer(ctx, peer); err != nil {
		return err
	}
	switch p.kind {
	case "finish":
		return r.finish(ctx)
	case "fail":
		return r.mutate(r.w.m.Fail(ctx, r.o.id, "demo: the upstream service said no"))
	case "cancel":
		return r.waitAndCancel(ctx)
	}
	if err := r.waitAndResume(ctx); err != nil {
		return err
	}
	if err := r.steps(ctx, p.steps+1, 1); err != nil {
		return err
	}
	return r.finish(ctx)
}

func (r *flowRun) create(ctx context.Context) error {
	p := r.o.plan
	f, err := r.w.m.CreateManaged(ctx, taskflow.CreateManagedInput{
		ControllerID:    "demo/" + p.kind,
		Goal:            fmt.Sprintf("demo flow #%d: %s", p.n, demoGoals[p.kind]),
		OwnerSessionKey: fmt.Sprintf("agent:demo-worker-%d:session:%s", r.w.n, r.d.session),
		RequesterOrigin: "taskflow-demo",
		CurrentStep:     "init",
		State:           map[string]any{"plan": p.kind, "steps_done": 0},
	})
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	r.o.id = f.ID
	r.d.progress.set(p.n-1, f.Status)
	return nil
}

var demoGoals = map[string]string{
	"finish":   "summarise the inbox and file the report",
	"timer":    "retry the upload after a back-off",
	"external": "wait for the payment webhook, then ship",
	"manual":   "wait for a human approval, then publish",
	"fail":     "sync the calendar (the upstream refuses)",
	"cancel":   "draft a reply (the user changes their mind)",
}

// mutate counts one persisted mutation.
func (r *flowRun) mutate(f *taskflow.Flow, err error) error {
	if err != nil {
		return err
	}
	r.o.mutations++
	r.d.progress.set(r.o.plan.n-1, f.Status)
	return nil
}

// steps runs n steps numbered from first: observe it running, bump
// steps_done and the current step, observe it succeeded.
func (r *flowRun) steps(ctx context.Context, first, n int) error {
	for s := first; s < first+n; s++ {
		runID := fmt.Sprintf("run-%d", s)
		task := fmt.Sprintf("step %d of %s", s, r.o.plan.kind)
		if err := r.observe(ctx, runID, task, taskflow.StepRunning); err != nil {
			return err
		}
		f, err := r.w.m.UpdateState(ctx, r.o.id, map[string]any{"steps_done": s}, fmt.Sprintf("step-%d", s))
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

func (r *flowRun) awaitPeer(ctx context.Context, reply chan peerReply) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case rep := <-reply:
		if rep.err != nil {
			return fmt.Errorf("peer note: %w", rep.err)
		}
		r.o.mutations++
		r.o.peerNote = rep.note
		return nil
	}
}

func (r *flowRun) finish(ctx context.Context) error {
	return r.mutate(r.w.m.Finish(ctx, r.o.id, map[string]any{"result": "done"}))
}

// waitAndResume parks the flow on its planned wait, has the right actor
// resume it, and waits until it runs again.
func (r *flowRun) waitAndResume(ctx context.Context) error {
	p := r.o.plan
	var cond taskflow.WaitCondition
	var trigger func() <-chan error
	switch p.kind {
	case "timer":
		cond = taskflow.WaitTimer(time.Now().Add(p.delay))
		trigger = func() <-chan error { return nil } // the engines' ticks resume it
	case "external":
		corr := fmt.Sprintf("payment-%d-%s", p.n, r.o.id.String()[:8])
		cond = taskflow.WaitExternalEvent(demoTopic, corr)
		trigger = func() <-chan error { return r.publish(ctx, corr) }
	case "manual":
		cond = taskflow.WaitManual()
		trigger = func() <-chan error {
			return r.d.after(ctx, p.delay, func(m *taskflow.Manager) error {
				_, err := m.Resume(ctx, r.o.id, nil)
				return err
			})
		}
	}
	if err := r.mutate(r.w.m.SetWaiting(ctx, r.o.id, cond)); err != nil {
		return fmt.Errorf("wait: %w", err)
	}
	errc := trigger()
	f, err := r.awaitChange(ctx)
	if err != nil {
		return err
	}
	if errc != nil {
		if err := <-errc; err != nil {
			return fmt.Errorf("%s resume: %w", p.kind, err)
		}
	}
	if f.Status != taskflow.StatusRunning {
		return fmt.Errorf("after the wait the flow is %s, want running", f.Status)
	}
	r.o.mutations++
	r.o.resumes++
	r.d.progress.resumed()
	return nil
}

// publish sends the external event through the resume bridge after the
// plan's delay: half the time addressed to the flow, half only by topic
// and correlation id.
func (r *flowRun) publish(ctx context.Context, corr string) <-chan error {
	return r.d.after(ctx, r.o.plan.delay, func(m *taskflow.Manager) error {
		req := taskflow.ResumeRequest{Topic: demoTopic, CorrelationID: corr, Payload: map[string]any{"paid": true}}
		if r.o.plan.n%2 == 0 {
			req.FlowID = r.o.id
		}
		return m.PublishResume(ctx, req)
	})
}

// waitAndCancel parks the flow on a manual wait; the operator requests a
// cancel and an engine's tick cancels the flow.
func (r *flowRun) waitAndCancel(ctx context.Context) error {
	if err := r.mutate(r.w.m.SetWaiting(ctx, r.o.id, taskflow.WaitManual())); err != nil {
		return fmt.Errorf("wait: %w", err)
	}
	errc := r.d.after(ctx, r.o.plan.delay, func(m *taskflow.Manager) error {
		_, err := m.RequestCancel(ctx, r.o.id)
		return err
	})
	f, err := r.awaitChange(ctx)
	if err != nil {
		return err
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("request cancel: %w", err)
	}
	if f.Status != taskflow.StatusCancelled {
		return fmt.Errorf("after the cancel request the flow is %s, want cancelled", f.Status)
	}
	r.o.mutations += 2 // cancel_requested, then cancelled by a tick
	r.d.progress.set(r.o.plan.n-1, f.Status)
	return nil
}

// awaitChange polls the flow until it is no longer waiting. Polling Get
// every 25 ms is fine for a demo; a real worker would be told instead (a
// queue of its own, the resume bridge's payload, pub/sub).
func (r *flowRun) awaitChange(ctx context.Context) (*taskflow.Flow, error) {
	deadline := time.Now().Add(demoWaitLimit)
	t := time.NewTicker(demoPoll)
	defer t.Stop()
	for {
		f, err := r.w.m.Get(ctx, r.o.id)
		if err != nil {
			return nil, err
		}
		if f.Status != taskflow.StatusWaiting {
			return f, nil
		}
		if time.Now().After(deadline) {
			return nil, errors.New("still waiting after " + demoWaitLimit.String())
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// idOrNil names a flow in messages.
func idOrNil(id uuid.UUID) string {
	if id == uuid.Nil {
		return "(not created)"
	}
	return id.String()
}
