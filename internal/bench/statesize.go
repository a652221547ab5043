package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/taskflow-dev/taskflow"
)

// stateSize: UpdateState with a one-key patch on a flow whose state is
// ~1 KiB versus ~1 MiB, sequential, on a private server so INFO
// commandstats only sees this suite.
func (r *runner) stateSize(ctx context.Context) error {
	srv, err := r.startServer(ctx)
	if err != nil {
		return err
	}
	defer srv.kill()
	st, err := taskflow.NewRedisStore(srv.client, taskflow.WithPrefix(r.newPrefix("state")))
	if err != nil {
		return err
	}
	if err := st.LoadScripts(ctx); err != nil {
		return err
	}
	m := taskflow.NewManager(st)
	small, big, bigBytes, smallBytes, err := makeStateFlows(ctx, m, r.sz.bigStateKeys, r.sz.bigStateValue)
	if err != nil {
		return err
	}
	type sample struct{ wall, server float64 }
	N := r.sz.stateOps
	measure := func(id uuid.UUID, round int, opts []taskflow.MutationOption) (sample, error) {
		before, err := commandStats(ctx, srv.client)
		if err != nil {
			return sample{}, err
		}
		start := time.Now()
		for i := 0; i < N; i++ {
			patch := json.RawMessage(`{"counter":` + strconv.Itoa(round*N+i) + `}`)
			if _, err := m.UpdateState(ctx, id, patch, "", opts...); err != nil {
				return sample{}, err
			}
		}
		el := time.Since(start)
		after, err := commandStats(ctx, srv.client)
		if err != nil {
			return sample{}, err
		}
		ev := scriptDelta(before, after)
		if ev.calls != int64(N) {
			return sample{}, fmt.Errorf("expected %d EVALSHA calls, commandstats saw %d", N, ev.calls)
		}
		return sample{wall: float64(el.Microseconds()) / float64(N), server: float64(ev.usec) / float64(N)}, nil
	}
	modes := []struct {
		name string
		opts []taskflow.MutationOption
	}{
		{"whole flow returned (default)", nil},
		{"WithoutState()", []taskflow.MutationOption{taskflow.WithoutState()}},
	}
	// Warm up both flows (first EVALSHA per connection, allocator).
	for _, id := range []uuid.UUID{small, big} {
		for i := 0; i < 5; i++ {
			if _, err := m.UpdateState(ctx, id, json.RawMessage(`{"counter":0}`), ""); err != nil {
				return err
			}
		}
	}
	pick := medianBy[sample]
	wall := func(s sample) float64 { return s.wall }
	server := func(s sample) float64 { return s.server }
	netw := func(s sample) float64 { return s.wall - s.server }
	fmt.Fprintf(r.out, "UpdateState with a 1-key patch, %d sequential calls per round from 1 goroutine, private Redis.\n", N)
	fmt.Fprintln(r.out, "server = EVALSHA usec/call from INFO commandstats; client+net = wall - server (transfer and Go decode).")
	fmt.Fprintln(r.out, "The scripts read the record with HMGET and never the state; the default reply returns the whole flow,")
	fmt.Fprintln(r.out, "state included (an HGETALL), WithoutState() returns the record only.")
	var rows, ratios [][]string
	for _, mode := range modes {
		var smallS, bigS []sample
		for round := 0; round < r.cfg.Rounds; round++ {
			order := []bool{false, true} // false = small
			if round%2 == 1 {
				order = []bool{true, false}
			}
			for _, isBig := range order {
				id := small
				if isBig {
					id = big
				}
				s, err := measure(id, round, mode.opts)
				if err != nil {
					return err
				}
				if isBig {
					bigS = append(bigS, s)
				} else {
					smallS = append(smallS, s)
				}
			}
		}
		row := func(name string, bytes int, ss []sample) []string {
			xs := make([]float64, len(ss))
			for i, s := range ss {
				xs[i] = s.wall
			}
			lo, hi := minMax(xs)
			return []string{mode.name, name, n(bytes), f(pick(ss, wall), 1), f(lo, 1) + "-" + f(hi, 1),
				f(pick(ss, server), 1), f(pick(ss, netw), 1)}
		}
		rows = append(rows, row("~1 KiB", smallBytes, smallS), row("~1 MiB", bigBytes, bigS))
		wr := pick(bigS, wall) / pick(smallS, wall)
		sr := pick(bigS, server) / pick(smallS, server)
		ratios = append(ratios,
			[]string{mode.name + ": wall clock", f(wr, 2), "<= 1.5", verdict(wr <= 1.5)},
			[]string{mode.name + ": server time", f(sr, 2), "<= 1.5", verdict(sr <= 1.5)})
	}
	table(r.out, []string{"reply", "state", "state bytes", "wall us/op", "wall range", "server us/op", "client+net us/op"}, rows)
	fmt.Fprintln(r.out)
	table(r.out, []string{"ratio of medians, 1 MiB / 1 KiB", "value", "target", "verdict"}, ratios)
	return nil
}

// makeStateFlows creates a running flow with a ~1 KiB state and one with
// keys x value-byte values (built by UpdateState patches of 64 keys), and
// returns their ids and state sizes in bytes.
func makeStateFlows(ctx context.Context, m *taskflow.Manager, keys, valueBytes int) (small, big uuid.UUID, bigBytes, smallBytes int, err error) {
	value := jsonBlob(valueBytes)
	in := taskflow.CreateManagedInput{
		ControllerID: "bench/state-size", Goal: "measure state size", OwnerSessionKey: "agent:bench:session:state",
		CurrentStep: "init", State: json.RawMessage(`{"blob":` + value + `}`),
	}
	fs, err := m.CreateMirrored(ctx, in)
	if err != nil {
		return small, big, 0, 0, err
	}
	in.State = json.RawMessage(`{}`)
	fb, err := m.CreateMirrored(ctx, in)
	if err != nil {
		return small, big, 0, 0, err
	}
	for k := 0; k < keys; k += 64 {
		var b strings.Builder
		b.WriteByte('{')
		for j := k; j < min(k+64, keys); j++ {
			if j > k {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"k%04d":%s`, j, value)
		}
		b.WriteByte('}')
		if fb, err = m.UpdateState(ctx, fb.ID, json.RawMessage(b.String()), ""); err != nil {
			return small, big, 0, 0, fmt.Errorf("building the big state: %w", err)
		}
	}
	return fs.ID, fb.ID, len(fb.State), len(fs.State), nil
}

// jsonBlob is a JSON string of exactly n bytes (quotes included).
func jsonBlob(n int) string {
	return `"` + strings.Repeat("x", max(n-2, 0)) + `"`
}
