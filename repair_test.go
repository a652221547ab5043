package taskflow

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/fsck"
)

// TestRepairLeavesAFlowThatWaitedAgainAlone: a repair reads a waiting
// flow to rebuild its index entries; before its script runs, the flow is
// resumed and waits on something else. The repair must index the new
// wait, not restore the old one (the old code put a 48 h timer back in
// place of a 1 h one, and indexed a correlation id the flow no longer
// waited for).
func TestRepairLeavesAFlowThatWaitedAgainAlone(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		now := e.clock.Now()
		k := e.store.keys
		for _, c := range []struct {
			name        string
			first, then WaitCondition
		}{
			{"timer", WaitTimer(now.Add(48 * time.Hour)), WaitTimer(now.Add(time.Hour))},
			{"external", WaitExternalEvent("mail", "old"), WaitExternalEvent("mail", "new")},
			{"to timer", WaitExternalEvent("mail", "old2"), WaitTimer(now.Add(2 * time.Hour))},
		} {
			f := e.waitingFlow(t, c.first)
			// A real problem for the repair to fix.
			e.client.ZRem(ctx, k.owner(k.shardOf(f.ID), f.OwnerSessionKey), f.ID.String())
			c2 := e.b.client(t)
			verifier := NewManager(e.reopenStore(c2))
			hook := &beforeScript{sc: verifier.store.scripts.reindexFlow, fn: func() {
				must(t, try(e.m.Resume(ctx, f.ID, nil)))
				must(t, try(e.m.SetWaiting(ctx, f.ID, c.then)))
			}}
			c2.AddHook(hook)
			rep := must(t, try(verifier.Verify(ctx, fsck.WithRepair())))
			if !hook.once.Load() {
				t.Fatalf("%s: the worker never acted before the repair's script", c.name)
			}
			if len(rep.Problems) != 1 || rep.Problems[0].Kind != "owner_index_missing" || !rep.Problems[0].Repaired {
				t.Fatalf("%s: repair report %+v", c.name, rep.Problems)
			}
			after := must(t, try(e.m.Verify(ctx)))
			if !after.OK() {
				t.Fatalf("%s: the repair damaged the flow: %+v", c.name, after.Problems)
			}
			if c.then.Kind == WaitKindTimer {
				if got := e.client.ZScore(ctx, k.timers(k.shardOf(f.ID)), f.ID.String()).Val(); int64(got) != c.then.At.UnixMilli() {
					t.Fatalf("%s: timer entry at %v, want %v", c.name, int64(got), c.then.At.UnixMilli())
				}
			}
			if c.first.Kind == WaitKindExternalEvent {
				if got := must(t, try(e.m.ResumeByCorrelation(ctx, c.first.Topic, c.first.CorrelationID, nil))); len(got) != 0 {
					t.Fatalf("%s: the old correlation id still resumes the flow", c.name)
				}
			}
		}
	})
}

// TestRepairOfAStepBesidePrune: a repair that puts a step back in its
// flow's step set must not recreate the set of a flow pruned meanwhile
// (the old repair counted the set, then wrote it, in two commands).
func TestRepairOfAStepBesidePrune(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
		must(t, try(e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: "r1", Status: StepSucceeded})))
		must(t, try(e.m.Finish(ctx, f.ID, nil)))
		e.client.ZRem(ctx, e.store.keys.steps(f.ID), "r1") // step_unindexed
		c2 := e.b.client(t)
		verifier := NewManager(e.reopenStore(c2))
		pruned := 0
		c2.AddHook(&beforeKey{key: e.store.keys.steps(f.ID), skip: []string{"zrank", "exists", verifier.store.scripts.verifyFlow.Hash(), verifier.store.scripts.verifyFlow.fn}, fn: func() {
			e.clock.Advance(time.Millisecond)
			pruned = must(t, try(e.m.PruneTerminalFlows(ctx, 0)))
		}})
		must(t, try(verifier.Verify(ctx, fsck.WithRepair())))
		if pruned != 1 {
			t.Fatalf("the prune in the window pruned %d flows", pruned)
		}
		// The unindexed step record is left (prune deletes the steps it
		// finds in the set), but the set is not recreated.
		if e.client.Exists(ctx, e.store.keys.steps(f.ID)).Val() != 0 {
			t.Fatal("the repair recreated the step set of a pruned flow")
		}
		// The next repair deletes the orphan; the space is clean.
		must(t, try(e.m.Verify(ctx, fsck.WithRepair())))
		requireVerifyClean(t, e.m)
	})
}

// TestVerifyAndRepairBesideLiveWorkers runs Verify and Verify(WithRepair)
// over and over while workers drive flows through every kind of wait,
// claim, step, finish and prune, an engine ticks, and an injector breaks
// one kind of index entry (owner index) on purpose. Verify must report
// only the injected problems (nothing that vanishes when traffic stops),
// and repairs must never damage a flow that changed under them: once the
// traffic stops, one repair and a final Verify find the space clean.
func TestVerifyAndRepairBesideLiveWorkers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		const workers, perWorker, runs = 4, 5, 6
		ctx, stop := context.WithCancel(e.ctx)
		defer stop()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var ids []uuid.UUID
		fail := make(chan error, 16)
		report := func(err error) {
			select {
			case fail <- err:
			default:
			}
		}
		benign := func(err error) bool {
			return err == nil || ctx.Err() != nil || errors.Is(err, ErrIllegalTransition) || errors.Is(err, ErrAlreadyTerminal) ||
				errors.Is(err, ErrCancelPending) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrLeaseLost)
		}
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				ctl := fmt.Sprintf("live/%d", w)
				mine := make([]uuid.UUID, perWorker)
				newFlow := func(i int) {
					in := seedInput()
					in.ControllerID = ctl
					f, err := e.m.CreateMirrored(ctx, in)
					if err != nil {
						if ctx.Err() == nil {
							report(err)
						}
						return
					}
					mine[i] = f.ID
					mu.Lock()
					ids = append(ids, f.ID)
					mu.Unlock()
				}
				for i := range mine {
					newFlow(i)
				}
				for n := 0; ctx.Err() == nil; n++ {
					i := rand.IntN(perWorker)
					f, err := e.m.Get(ctx, mine[i])
					if err != nil {
						if !benign(err) {
							report(err)
						}
						newFlow(i)
						continue
					}
					now := e.clock.Now()
					switch {
					case f.Status.IsTerminal():
						newFlow(i)
					case f.Status == StatusWaiting && rand.IntN(4) == 0:
						_, err = e.m.RequestCancel(ctx, f.ID)
					case f.Status == StatusWaiting:
						_, err = e.m.Resume(ctx, f.ID, map[string]int{"n": n})
					default:
						switch rand.IntN(7) {
						case 0:
							_, err = e.m.SetWaiting(ctx, f.ID, WaitTimer(now.Add(time.Duration(1+rand.IntN(48))*time.Hour)))
						case 1:
							_, err = e.m.SetWaiting(ctx, f.ID, WaitExternalEvent("mail", fmt.Sprintf("m-%d-%d", w, n)))
						case 2:
							_, err = e.m.SetWaiting(ctx, f.ID, WaitManual())
						case 3:
							_, err = e.m.RecordStepObservation(ctx, StepObservation{FlowID: f.ID, RunID: fmt.Sprintf("r%d", n%3), Status: StepRunning})
						case 4:
							var l *Lease
							_, l, err = e.m.Claim(ctx, ctl, "w", time.Minute, WithClaimWait(0))
							if err == nil && l != nil {
								err = e.m.Release(ctx, l)
							}
						case 5:
							_, err = e.m.Finish(ctx, f.ID, nil)
						default:
							_, err = e.m.UpdateState(ctx, f.ID, map[string]int{"n": n}, "")
						}
					}
					if !benign(err) {
						report(err)
					}
				}
			}(w)
		}
		// An engine ticks far ahead (every timer is due), and terminal
		// flows are pruned as they age.
		wg.Add(1)
		go func() {
			defer wg.Done()
			eng := e.engine()
			for ctx.Err() == nil {
				if rep := eng.TickAt(ctx, e.clock.Now().Add(100*time.Hour)); rep.Err != nil && ctx.Err() == nil {
					report(rep.Err)
				}
				e.clock.Advance(time.Millisecond)
				if _, err := e.m.PruneTerminalFlows(ctx, 0); err != nil && ctx.Err() == nil {
					report(err)
				}
			}
		}()
		// The injector: drops owner index entries (a real problem).
		var injected atomic.Int64
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				mu.Lock()
				var id uuid.UUID
				if len(ids) > 0 {
					id = ids[rand.IntN(len(ids))]
				}
				mu.Unlock()
				if id != uuid.Nil {
					k := e.store.keys
					if e.client.ZRem(ctx, k.owner(k.shardOf(id), seedInput().OwnerSessionKey), id.String()).Val() == 1 {
						injected.Add(1)
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()

		found, repaired := 0, 0
		for r := 0; r < runs; r++ {
			var opts []fsck.Option
			if r%2 == 1 {
				opts = append(opts, fsck.WithRepair())
			}
			rep, err := e.m.Verify(e.ctx, opts...)
			if err != nil {
				t.Fatalf("run %d: %v", r, err)
			}
			for _, p := range rep.Problems {
				if p.Kind != "owner_index_missing" {
					stop()
					wg.Wait()
					t.Fatalf("run %d: a problem that is not there: %+v", r, p)
				}
				found++
				if p.Repaired {
					repaired++
				}
			}
		}
		stop()
		wg.Wait()
		select {
		case err := <-fail:
			t.Fatalf("a worker failed: %v", err)
		default:
		}
		// Traffic stopped: one repair for the last injections, then clean.
		if _, err := e.m.Verify(e.ctx, fsck.WithRepair()); err != nil {
			t.Fatal(err)
		}
		rep := must(t, try(e.m.Verify(e.ctx)))
		if !rep.OK() {
			var lines []string
			for _, p := range rep.Problems {
				lines = append(lines, fmt.Sprintf("%s %s %s", p.Kind, p.FlowID, p.Detail))
			}
			t.Fatalf("after the traffic stopped, %d problems (repairs damaged flows):\n%s", len(rep.Problems), strings.Join(lines, "\n"))
		}
		if found == 0 || repaired == 0 || injected.Load() == 0 {
			t.Fatalf("the test did not exercise repairs: %d injected, %d found, %d repaired", injected.Load(), found, repaired)
		}
		t.Logf("%d injected, %d found, %d repaired, %d flows", injected.Load(), found, repaired, len(ids))
	})
}

// beforeScript runs fn once, just before the first command that runs the
// script sc (EVALSHA or FCALL) is sent: a worker acting in the window
// between a read and the script that relies on it.
type beforeScript struct {
	sc   *script
	once atomic.Bool
	fn   func()
}

func (h *beforeScript) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *beforeScript) check(cmds ...redis.Cmder) {
	for _, c := range cmds {
		a := c.Args()
		if len(a) > 1 && slices.Contains(scriptRefs(h.sc), fmt.Sprint(a[1])) && h.once.CompareAndSwap(false, true) {
			h.fn()
			return
		}
	}
}

func (h *beforeScript) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.check(cmd)
		return next(ctx, cmd)
	}
}

func (h *beforeScript) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.check(cmds...)
		return next(ctx, cmds)
	}
}

// beforeKey runs fn once, just before the first command that names key
// and is not a read that skip names (a command name, a script hash or
// function).
type beforeKey struct {
	key  string
	skip []string
	once atomic.Bool
	fn   func()
}

func (h *beforeKey) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *beforeKey) check(cmds ...redis.Cmder) {
	for _, c := range cmds {
		args := c.Args()
		if len(args) > 1 && slices.ContainsFunc(h.skip, func(s string) bool {
			return strings.EqualFold(fmt.Sprint(args[0]), s) || args[1] == s
		}) {
			continue
		}
		for _, a := range args {
			if a == h.key && h.once.CompareAndSwap(false, true) {
				h.fn()
				return
			}
		}
	}
}

func (h *beforeKey) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.check(cmd)
		return next(ctx, cmd)
	}
}

func (h *beforeKey) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.check(cmds...)
		return next(ctx, cmds)
	}
}
