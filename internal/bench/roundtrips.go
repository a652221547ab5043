package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/taskflow-dev/taskflow"
)

// roundtrips: what each manager call sends, counted by a go-redis hook on
// the store's client (scripts loaded first, so EVALSHA hits), on the
// shared Redis.
func (r *runner) roundtrips(ctx context.Context) error {
	opt, err := redis.ParseURL(r.cfg.RedisURL)
	if err != nil {
		return err
	}
	c := redis.NewClient(opt)
	defer c.Close()
	prefix := r.newPrefix("rt")
	defer r.cleanupShared(ctx, c, prefix)
	hook := newCountHook()
	c.AddHook(hook)
	st, err := taskflow.NewRedisStore(c, taskflow.WithPrefix(prefix))
	if err != nil {
		return err
	}
	if err := st.LoadScripts(ctx); err != nil {
		return err
	}
	// Open a connection for single commands and one for pipelines (go-redis
	// keeps a separate pool for them), so no HELLO/CLIENT SETINFO of a new
	// connection is counted.
	if err := c.Ping(ctx).Err(); err != nil {
		return err
	}
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error { p.Ping(ctx); p.Ping(ctx); return nil }); err != nil {
		return err
	}
	m := taskflow.NewManager(st)
	in := memFlowInput(1, 1, false)
	var rows [][]string
	measure := func(name string, fn func() error) error {
		// Reload before each call: another user of the shared server may
		// have flushed the script cache, which would add an EVAL.
		if err := st.LoadScripts(ctx); err != nil {
			return err
		}
		hook.reset()
		if err := fn(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rows = append(rows, []string{name, n(int(hook.trips.Load())), n(int(hook.cmds.Load())), hook.summary()})
		return nil
	}
	mirrored := func() (uuid.UUID, error) {
		fl, err := m.CreateMirrored(ctx, in)
		if err != nil {
			return uuid.Nil, err
		}
		return fl.ID, nil
	}
	var managed, running, other, cancelled, stepped uuid.UUID
	steps := []struct {
		name string
		fn   func() error
	}{
		{"CreateManaged", func() error {
			fl, err := m.CreateManaged(ctx, in)
			if err == nil {
				managed = fl.ID
			}
			return err
		}},
		{"CreateMirrored", func() (err error) { running, err = mirrored(); return err }},
		{"StartRunning", func() error { _, err := m.StartRunning(ctx, managed); return err }},
		{"UpdateState", func() error {
			_, err := m.UpdateState(ctx, running, json.RawMessage(`{"n":"000001"}`), "triage")
			return err
		}},
		{"SetWaiting (timer)", func() error {
			_, err := m.SetWaiting(ctx, running, taskflow.WaitTimer(time.Now().Add(time.Hour)))
			return err
		}},
		{"Resume", func() error { _, err := m.Resume(ctx, running, json.RawMessage(`{"approved":true}`)); return err }},
		{"Finish", func() error { _, err := m.Finish(ctx, running, json.RawMessage(`{"done":true}`)); return err }},
		{"Fail", func() error { _, err := m.Fail(ctx, managed, "upstream refused"); return err }},
		{"RequestCancel", func() error {
			hook.reset() // the setup below is not counted
			var err error
			if other, err = mirrored(); err != nil {
				return err
			}
			hook.reset()
			_, err = m.RequestCancel(ctx, other)
			cancelled = other
			return err
		}},
		{"Cancel", func() error { _, err := m.Cancel(ctx, cancelled); return err }},
		{"RecordStepObservation", func() error {
			var err error
			if stepped, err = mirrored(); err != nil {
				return err
			}
			hook.reset()
			_, err = m.RecordStepObservation(ctx, taskflow.StepObservation{
				FlowID: stepped, RunID: "run-1", Task: "fetch", Status: taskflow.StepRunning,
			})
			return err
		}},
		{"Get", func() error { _, err := m.Get(ctx, stepped); return err }},
		// Not in the list, for context:
		{"(ListSteps, 1 step)", func() error { _, err := m.ListSteps(ctx, stepped); return err }},
		{"(ListEvents, limit 10)", func() error { _, err := m.ListEvents(ctx, stepped, 10); return err }},
		{"(ListByOwner, limit 10)", func() error { _, err := m.ListByOwner(ctx, in.OwnerSessionKey, taskflow.WithLimit(10)); return err }},
		{"(WaitEngine.TickAt, none due)", func() error {
			rep := taskflow.NewWaitEngine(m).TickAt(ctx, time.Now())
			return rep.Err
		}},
		// Early events:
		{"(SetWaiting, external event, none kept)", func() error {
			hook.reset() // the setup below is not counted
			id, err := mirrored()
			if err != nil {
				return err
			}
			hook.reset()
			_, err = m.SetWaiting(ctx, id, taskflow.WaitExternalEvent("rt", id.String()))
			return err
		}},
		{"(SetWaiting, external event, one kept by correlation)", func() error {
			hook.reset()
			id, err := mirrored()
			if err != nil {
				return err
			}
			if _, err := m.ResumeByCorrelation(ctx, "rt", id.String(), nil); err != nil {
				return err
			}
			hook.reset()
			_, err = m.SetWaiting(ctx, id, taskflow.WaitExternalEvent("rt", id.String()))
			return err
		}},
		{"(ResumeByCorrelation, one flow waiting)", func() error {
			hook.reset()
			id, err := mirrored()
			if err != nil {
				return err
			}
			if _, err := m.SetWaiting(ctx, id, taskflow.WaitExternalEvent("rt", id.String())); err != nil {
				return err
			}
			hook.reset()
			_, err = m.ResumeByCorrelation(ctx, "rt", id.String(), nil)
			return err
		}},
		{"(ResumeByCorrelation, nobody waiting: kept)", func() error {
			_, err := m.ResumeByCorrelation(ctx, "rt", uuid.NewString(), nil)
			return err
		}},
		{"(TryResumeExternal, flow waiting)", func() error {
			hook.reset()
			id, err := mirrored()
			if err != nil {
				return err
			}
			if _, err := m.SetWaiting(ctx, id, taskflow.WaitExternalEvent("rt", id.String())); err != nil {
				return err
			}
			hook.reset()
			_, err = m.TryResumeExternal(ctx, id, "rt", id.String(), nil)
			return err
		}},
	}
	for _, s := range steps {
		if err := measure(s.name, s.fn); err != nil {
			return err
		}
	}
	fmt.Fprintln(r.out, "Counted by a go-redis hook on the store's client after LoadScripts (a pipeline is one round trip);")
	fmt.Fprintln(r.out, "setup calls are not counted. Shared Redis.")
	table(r.out, []string{"call", "round trips", "commands", "commands sent"}, rows)
	return nil
}
