package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
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
	type sample struct{ wall, server, hgetall float64 }
	var smallS, bigS []sample
	N := r.sz.stateOps
	measure := func(id uuid.UUID, round int) (sample, error) {
		before, err := commandStats(ctx, srv.client)
		if err != nil {
			return sample{}, err
		}
		start := time.Now()
		for i := 0; i < N; i++ {
			patch := json.RawMessage(`{"counter":` + strconv.Itoa(round*N+i) + `}`)
			if _, err := m.UpdateState(ctx, id, patch, ""); err != nil {
				return sample{}, err
			}
		}
		el := time.Since(start)
		after, err := commandStats(ctx, srv.client)
		if err != nil {
			return sample{}, err
		}
		ev := statDelta(before, after, "evalsha")
		hg := statDelta(before, after, "hgetall")
		if ev.calls != int64(N) {
			return sample{}, fmt.Errorf("expected %d EVALSHA calls, commandstats saw %d", N, ev.calls)
		}
		return sample{
			wall:    float64(el.Microseconds()) / float64(N),
			server:  float64(ev.usec) / float64(N),
			hgetall: float64(hg.usec) / float64(N),
		}, nil
	}
	// Warm up both (first EVALSHA per connection, allocator).
	for _, id := range []uuid.UUID{small, big} {
		for i := 0; i < 5; i++ {
			if _, err := m.UpdateState(ctx, id, json.RawMessage(`{"counter":0}`), ""); err != nil {
				return err
			}
		}
	}
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
			s, err := measure(id, round)
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
	pick := func(ss []sample, g func(sample) float64) float64 {
		xs := make([]float64, len(ss))
		for i, s := range ss {
			xs[i] = g(s)
		}
		return median(xs)
	}
	wall := func(s sample) float64 { return s.wall }
	server := func(s sample) float64 { return s.server }
	hget := func(s sample) float64 { return s.hgetall }
	rest := func(s sample) float64 { return s.server - s.hgetall }
	netw := func(s sample) float64 { return s.wall - s.server }
	row := func(name string, bytes int, ss []sample) []string {
		lo, hi := minMax(func() []float64 {
			xs := make([]float64, len(ss))
			for i, s := range ss {
				xs[i] = s.wall
			}
			return xs
		}())
		return []string{name, n(bytes), f(pick(ss, wall), 1), f(lo, 1) + "-" + f(hi, 1), f(pick(ss, server), 1),
			f(pick(ss, hget), 1), f(pick(ss, rest), 1), f(pick(ss, netw), 1)}
	}
	fmt.Fprintf(r.out, "UpdateState with a 1-key patch, %d sequential calls per round from 1 goroutine, private Redis.\n", N)
	fmt.Fprintln(r.out, "server = EVALSHA usec/call from INFO commandstats; HGETALL = the usec of the HGETALLs the script runs")
	fmt.Fprintln(r.out, "(load_flow + the reply's flow and state hashes); client+net = wall - server (transfer and Go decode).")
	table(r.out, []string{"state", "state bytes", "wall us/op", "wall range", "server us/op", "HGETALL us/op", "server minus HGETALL cmd", "client+net us/op"},
		[][]string{row("~1 KiB", smallBytes, smallS), row("~1 MiB", bigBytes, bigS)})
	wr := pick(bigS, wall) / pick(smallS, wall)
	sr := pick(bigS, server) / pick(smallS, server)
	rr := pick(bigS, rest) / pick(smallS, rest)
	fmt.Fprintln(r.out)
	table(r.out, []string{"ratio 1 MiB / 1 KiB", "value", "target", "verdict"}, [][]string{
		{"wall clock (whole flow returned)", f(wr, 2), "<= 1.5", verdict(wr <= 1.5)},
		{"server time of the script", f(sr, 2), "<= 1.5", verdict(sr <= 1.5)},
		{"server time minus its HGETALL commands", f(rr, 2), "(diagnostic)", ""},
	})
	return r.stateReplyCost(ctx, srv, st.Prefix(), small, big, N)
}

// stateReplyCost isolates what reading a state hash costs the server, in
// Lua (returned or not) and as a plain command, for both flows: the
// evidence for where the big state's time goes.
func (r *runner) stateReplyCost(ctx context.Context, srv *server, prefix string, small, big uuid.UUID, N int) error {
	returned := redis.NewScript("return redis.call('HGETALL', KEYS[1])")
	dropped := redis.NewScript("redis.call('HGETALL', KEYS[1]) return 1")
	for _, sc := range []*redis.Script{returned, dropped} {
		if err := sc.Load(ctx, srv.client).Err(); err != nil {
			return err
		}
	}
	type probe struct {
		name string
		cmd  string
		run  func(key string) error
	}
	probes := []probe{
		{"EVALSHA: return HGETALL(state)", "evalsha", func(k string) error { return returned.EvalSha(ctx, srv.client, []string{k}).Err() }},
		{"EVALSHA: HGETALL(state), return 1", "evalsha", func(k string) error { return dropped.EvalSha(ctx, srv.client, []string{k}).Err() }},
		{"plain HGETALL(state)", "hgetall", func(k string) error { return srv.client.HGetAll(ctx, k).Err() }},
	}
	var rows [][]string
	for _, p := range probes {
		row := []string{p.name}
		for _, id := range []uuid.UUID{small, big} {
			key := shardTag(prefix, id, defaultShards) + ":state:" + id.String()
			var walls, servers []float64
			for round := 0; round < r.cfg.Rounds; round++ {
				before, err := commandStats(ctx, srv.client)
				if err != nil {
					return err
				}
				start := time.Now()
				for i := 0; i < N; i++ {
					if err := p.run(key); err != nil {
						return fmt.Errorf("%s: %w", p.name, err)
					}
				}
				el := time.Since(start)
				after, err := commandStats(ctx, srv.client)
				if err != nil {
					return err
				}
				d := statDelta(before, after, p.cmd)
				walls = append(walls, float64(el.Microseconds())/float64(N))
				servers = append(servers, float64(d.usec)/float64(max(d.calls, 1)))
			}
			row = append(row, f(median(walls), 1), f(median(servers), 1))
		}
		rows = append(rows, row)
	}
	fmt.Fprintln(r.out)
	fmt.Fprintln(r.out, "What reading the state hash costs (same flows, same N, us per call): the script's reply copies the")
	fmt.Fprintln(r.out, "whole state through Lua; a plain HGETALL shows the command alone.")
	table(r.out, []string{"probe", "1 KiB wall", "1 KiB server", "1 MiB wall", "1 MiB server"}, rows)
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
