package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/taskflow-dev/taskflow"
)

// baselineAttempts is the original's retry budget (RETRY_ATTEMPTS = 2 in
// nexo-taskflow: a first try and one retry after a conflict).
const baselineAttempts = 2

// baseline is what a user would write without the library: the flow as
// one hash with the state as a JSON field, updated by a WATCH/MULTI
// read-merge-write with the original's retry budget.
type baseline struct {
	c      *redis.Client
	prefix string
}

func (b baseline) flowKey(i int) string   { return b.prefix + ":wb:flow:" + strconv.Itoa(i) }
func (b baseline) eventsKey(i int) string { return b.prefix + ":wb:events:" + strconv.Itoa(i) }

// create writes flow i as a running flow at revision 1 with the same
// fields and 5-key state as the library's flows.
func (b baseline) create(ctx context.Context, i int) error {
	in := memFlowInput(i, 100, false)
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	pipe := b.c.TxPipeline()
	pipe.HSet(ctx, b.flowKey(i),
		"controller_id", in.ControllerID, "goal", in.Goal, "owner_session_key", in.OwnerSessionKey,
		"requester_origin", in.RequesterOrigin, "current_step", in.CurrentStep, "status", "running",
		"cancel_requested", "0", "revision", "1", "created_at", now, "updated_at", now,
		"state", string(in.State.(json.RawMessage)))
	pipe.LPush(ctx, b.eventsKey(i), `{"kind":"created"}`, `{"kind":"started"}`)
	_, err := pipe.Exec(ctx)
	return err
}

// update is the baseline's UpdateState: WATCH the flow, read it, refuse
// terminal or cancel-pending flows, merge the patch in Go, then MULTI:
// write state, revision+1, updated_at, push the event (capped at 1000 like
// the library). A conflict is retried once; a second one is errFailedOp.
func (b baseline) update(ctx context.Context, i int, patch map[string]json.RawMessage) error {
	key, events := b.flowKey(i), b.eventsKey(i)
	for attempt := 0; attempt < baselineAttempts; attempt++ {
		err := b.c.Watch(ctx, func(tx *redis.Tx) error {
			fl, err := tx.HGetAll(ctx, key).Result()
			if err != nil {
				return err
			}
			if len(fl) == 0 {
				return taskflow.ErrNotFound
			}
			switch fl["status"] {
			case "finished", "failed", "cancelled":
				return taskflow.ErrAlreadyTerminal
			}
			if fl["cancel_requested"] == "1" {
				return taskflow.ErrCancelPending
			}
			state := map[string]json.RawMessage{}
			if err := json.Unmarshal([]byte(fl["state"]), &state); err != nil {
				return err
			}
			for k, v := range patch {
				state[k] = v
			}
			merged, err := json.Marshal(state)
			if err != nil {
				return err
			}
			rev, _ := strconv.ParseInt(fl["revision"], 10, 64)
			p, _ := json.Marshal(patch)
			now := time.Now().UnixMilli()
			entry := `{"kind":"state_updated","rev":` + strconv.FormatInt(rev+1, 10) + `,"at":` + strconv.FormatInt(now, 10) + `,"payload":{"patch":` + string(p) + `}}`
			_, err = tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
				pipe.HSet(ctx, key, "state", merged, "revision", rev+1, "updated_at", now)
				pipe.LPush(ctx, events, entry)
				pipe.LTrim(ctx, events, 0, 999)
				return nil
			})
			return err
		}, key)
		if err == nil {
			return nil
		}
		if !errors.Is(err, redis.TxFailedErr) {
			return err
		}
	}
	return errFailedOp
}

// watchBaseline: ours versus the WATCH/MULTI baseline at 64 goroutines,
// on distinct flows and on one contended flow, on a private server (the
// shared one's other clients made the cells, run one after the other,
// incomparable).
func (r *runner) watchBaseline(ctx context.Context) error {
	srv, err := r.startServer(ctx)
	if err != nil {
		return err
	}
	defer srv.kill()
	c := srv.client
	prefix := r.newPrefix("watch")
	W := r.sz.watchWorkers
	m, ids, err := newUpdateFlows(ctx, c, prefix, W+1) // ids[W] is the contended flow
	if err != nil {
		return err
	}
	bl := baseline{c: c, prefix: prefix}
	for i := 0; i <= W; i++ {
		if err := bl.create(ctx, i); err != nil {
			return err
		}
	}
	type cell struct{ ops, ok, failPct []float64 }
	cells := map[string]*cell{}
	rec := func(name string, res loadResult) {
		x := cells[name]
		if x == nil {
			x = &cell{}
			cells[name] = x
		}
		x.ops = append(x.ops, res.opsPerSec())
		x.ok = append(x.ok, res.okPerSec())
		x.failPct = append(x.failPct, res.failPct())
	}
	contended := W
	var oursOK, oursFailed, blOK, blFailed int64
	oursRev0, err := m.Get(ctx, ids[contended])
	if err != nil {
		return err
	}
	blRev0, err := c.HGet(ctx, bl.flowKey(contended), "revision").Int64()
	if err != nil {
		return err
	}
	oursOp := func(target func(w int) int) func(ctx context.Context, w int, seq int64) error {
		return func(ctx context.Context, w int, seq int64) error {
			_, err := m.UpdateState(ctx, ids[target(w)], json.RawMessage(`{"g`+strconv.Itoa(w)+`":`+strconv.FormatInt(seq, 10)+`}`), "")
			if errors.Is(err, taskflow.ErrRevisionMismatch) {
				return errFailedOp
			}
			return err
		}
	}
	blOp := func(target func(w int) int) func(ctx context.Context, w int, seq int64) error {
		return func(ctx context.Context, w int, seq int64) error {
			return bl.update(ctx, target(w), map[string]json.RawMessage{
				"g" + strconv.Itoa(w): json.RawMessage(strconv.FormatInt(seq, 10)),
			})
		}
	}
	distinct := func(w int) int { return w }
	same := func(int) int { return contended }
	for round := 0; round < r.cfg.Rounds; round++ {
		for _, x := range []struct {
			name string
			op   func(ctx context.Context, w int, seq int64) error
		}{
			{"distinct/ours", oursOp(distinct)}, {"distinct/baseline", blOp(distinct)},
			{"contended/ours", oursOp(same)}, {"contended/baseline", blOp(same)},
		} {
			res, err := load(ctx, W, r.sz.watchDuration, x.op)
			if err != nil {
				return fmt.Errorf("%s: %w", x.name, err)
			}
			rec(x.name, res)
			switch x.name {
			case "distinct/ours":
				oursFailed += res.failed
			case "contended/ours":
				oursOK += res.ok
				oursFailed += res.failed
			case "contended/baseline":
				blOK += res.ok
				blFailed += res.failed
			}
		}
	}
	oursRev1, err := m.Get(ctx, ids[contended])
	if err != nil {
		return err
	}
	blRev1, err := c.HGet(ctx, bl.flowKey(contended), "revision").Int64()
	if err != nil {
		return err
	}
	fmt.Fprintf(r.out, "%d goroutines, %s per cell, %d rounds, private Redis. Baseline: HGETALL under WATCH, merge in Go, MULTI HSET\n", W, r.sz.watchDuration, r.cfg.Rounds)
	fmt.Fprintf(r.out, "state+revision+updated_at, LPUSH+LTRIM event; %d attempts (the original's RETRY_ATTEMPTS), then a failure\n", baselineAttempts)
	fmt.Fprintln(r.out, "(RevisionMismatch). ops/s counts calls (successful or failed); a baseline call may be 2 attempts.")
	var rows [][]string
	for _, name := range []string{"distinct/ours", "distinct/baseline", "contended/ours", "contended/baseline"} {
		x := cells[name]
		rows = append(rows, []string{name, f(median(x.ops), 0), f(median(x.ok), 0), f(median(x.failPct), 2) + "%"})
	}
	table(r.out, []string{"scenario/impl", "ops/s", "successful ops/s", "failed"}, rows)
	dr := median(cells["distinct/ours"].ok) / median(cells["distinct/baseline"].ok)
	cr := median(cells["contended/ours"].ok) / median(cells["contended/baseline"].ok)
	oursRevOK := oursRev1.Revision-oursRev0.Revision == oursOK
	blRevOK := blRev1-blRev0 == blOK
	fmt.Fprintln(r.out)
	table(r.out, []string{"check", "value", "target", "verdict"}, [][]string{
		{"successful ops/s ours/baseline, distinct flows", f(dr, 2) + "x", ">= 2x", verdict(dr >= 2)},
		{"successful ops/s ours/baseline, one contended flow", f(cr, 1) + "x", ">= 30x", verdict(cr >= 30)},
		{"ours: failed calls, all cells and rounds", strconv.FormatInt(oursFailed, 10), "0", verdict(oursFailed == 0)},
		{"ours: contended revision gain = successes", fmt.Sprintf("%d = %d", oursRev1.Revision-oursRev0.Revision, oursOK), "equal", verdict(oursRevOK)},
		{"baseline: contended revision gain = successes", fmt.Sprintf("%d = %d (%d failed)", blRev1-blRev0, blOK, blFailed), "equal", verdict(blRevOK)},
	})
	fmt.Fprintf(r.out, "(contended flow, ours: revision %d at the end; 1 + successes over all rounds = %d.)\n", oursRev1.Revision, 1+oursOK)
	return nil
}
