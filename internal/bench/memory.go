package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/taskflow-dev/taskflow"
)

// memory: Redis bytes per flow, step, event and waiting flow, as the
// used_memory delta (client buffers excluded) of a private server.
// memFlowBound bounds a running and a waiting flow's bytes: 1,500 until
// issue 25 put every flow in its controller's index (Find), measured at
// 146 bytes more a running flow (1,343 -> 1,489) and 143 a waiting one
// (1,473 -> 1,616), so 150 more.
const memFlowBound = 1650

func (r *runner) memory(ctx context.Context) error {
	sz := r.sz
	var rows [][]string
	add := func(what string, count int, delta int64, target string, ok *bool) {
		each := float64(delta) / float64(count)
		v := ""
		if ok != nil {
			v = verdict(*ok)
		}
		rows = append(rows, []string{what, n(count), f(float64(delta), 0), f(each, 0), target, v})
	}
	var breakdown [][]string

	// 1. running flows, then steps and events on them.
	err := r.withManager(ctx, "mem", func(srv *server, m *taskflow.Manager, prefix string) error {
		before, err := stableMemory(ctx, srv.client)
		if err != nil {
			return err
		}
		ids := make([]uuid.UUID, sz.memFlows)
		owners := max(sz.memFlows/100, 1)
		err = parallel(ctx, sz.memWorkers, sz.memFlows, func(ctx context.Context, i int) error {
			fl, err := m.CreateMirrored(ctx, memFlowInput(i, owners, false))
			if err != nil {
				return err
			}
			if _, err := m.UpdateState(ctx, fl.ID, json.RawMessage(`{"n":"000001"}`), ""); err != nil {
				return err
			}
			ids[i] = fl.ID
			return nil
		})
		if err != nil {
			return err
		}
		afterFlows, err := stableMemory(ctx, srv.client)
		if err != nil {
			return err
		}
		perFlow := float64(afterFlows.data()-before.data()) / float64(sz.memFlows)
		ok := perFlow <= memFlowBound
		add(fmt.Sprintf("running flow: 5-key state, 3 events, %d flows/owner", sz.memFlows/owners), sz.memFlows, afterFlows.data()-before.data(), "<= "+n(memFlowBound), &ok)
		breakdown, err = flowBreakdown(ctx, srv.client, prefix, ids[0], perFlow)
		if err != nil {
			return err
		}

		// Steps: spread over up to a tenth of the flows, 10 run ids each.
		stepFlows := max(min(sz.memFlows, sz.memSteps/10), 1)
		err = parallel(ctx, sz.memWorkers, sz.memSteps, func(ctx context.Context, i int) error {
			_, err := m.RecordStepObservation(ctx, taskflow.StepObservation{
				FlowID: ids[i%stepFlows], RunID: fmt.Sprintf("run-%04d", i/stepFlows),
				Task: "fetch chapter", Status: taskflow.StepSucceeded, Result: json.RawMessage(`{"pages":12}`),
			})
			return err
		})
		if err != nil {
			return err
		}
		afterSteps, err := stableMemory(ctx, srv.client)
		if err != nil {
			return err
		}
		add("step: RecordStepObservation (step hash, steps zset entry, step_observed event)", sz.memSteps, afterSteps.data()-afterFlows.data(), "", nil)

		// Events: patches that overwrite a key with a value of the same
		// size, so only the event is new.
		err = parallel(ctx, sz.memWorkers, sz.memEvents, func(ctx context.Context, i int) error {
			_, err := m.UpdateState(ctx, ids[i%len(ids)], json.RawMessage(fmt.Sprintf(`{"n":"%06d"}`, 2+i/len(ids))), "")
			return err
		})
		if err != nil {
			return err
		}
		afterEvents, err := stableMemory(ctx, srv.client)
		if err != nil {
			return err
		}
		add("event: UpdateState patch of one same-size value (raw delta)", sz.memEvents, afterEvents.data()-afterSteps.data(), "", nil)
		return nil
	})
	if err != nil {
		return err
	}

	// 2. waiting flows (timer in an hour).
	err = r.withManager(ctx, "memw", func(srv *server, m *taskflow.Manager, prefix string) error {
		before, err := stableMemory(ctx, srv.client)
		if err != nil {
			return err
		}
		owners := max(sz.memWaiting/100, 1)
		at := time.Now().Add(time.Hour)
		err = parallel(ctx, sz.memWorkers, sz.memWaiting, func(ctx context.Context, i int) error {
			fl, err := m.CreateMirrored(ctx, memFlowInput(i, owners, false))
			if err != nil {
				return err
			}
			_, err = m.SetWaiting(ctx, fl.ID, taskflow.WaitTimer(at.Add(time.Duration(i)*time.Millisecond)))
			return err
		})
		if err != nil {
			return err
		}
		after, err := stableMemory(ctx, srv.client)
		if err != nil {
			return err
		}
		d := after.data() - before.data()
		ok := float64(d)/float64(sz.memWaiting) <= memFlowBound
		add("waiting flow: timer wait, 5-key state, 3 events (created, started, waiting)", sz.memWaiting, d, "<= "+n(memFlowBound), &ok)
		return nil
	})
	if err != nil {
		return err
	}

	// 3. variants: one flow per owner; a goal over 64 bytes.
	for _, v := range []struct {
		name        string
		owners      int
		longGoal    bool
		description string
	}{
		{"memo", sz.memVariant, false, "variant: running flow, 1 flow per owner session"},
		{"memg", max(sz.memVariant/100, 1), true, "variant: running flow, 100-byte goal (flow hash > 64-byte values)"},
	} {
		err = r.withManager(ctx, v.name, func(srv *server, m *taskflow.Manager, prefix string) error {
			before, err := stableMemory(ctx, srv.client)
			if err != nil {
				return err
			}
			err = parallel(ctx, sz.memWorkers, sz.memVariant, func(ctx context.Context, i int) error {
				fl, err := m.CreateMirrored(ctx, memFlowInput(i, v.owners, v.longGoal))
				if err != nil {
					return err
				}
				_, err = m.UpdateState(ctx, fl.ID, json.RawMessage(`{"n":"000001"}`), "")
				return err
			})
			if err != nil {
				return err
			}
			after, err := stableMemory(ctx, srv.client)
			if err != nil {
				return err
			}
			add(v.description, sz.memVariant, after.data()-before.data(), "", nil)
			return nil
		})
		if err != nil {
			return err
		}
	}

	// 4. early events: by correlation, one event per
	// pair (a reply per message id) and ten per pair; by flow id, one
	// per running flow (the flows are measured before the events).
	err = r.memoryEarly(ctx, sz.memWaiting, add)
	if err != nil {
		return err
	}

	fmt.Fprintf(r.out, "INFO memory used_memory delta minus mem_clients_normal delta, private Redis, filled by %d goroutines; one fill\n", sz.memWorkers)
	fmt.Fprintln(r.out, "per row (memory figures are deterministic to well under 1%, so they are not repeated over rounds).")
	table(r.out, []string{"what", "count", "bytes total", "bytes each", "target", "verdict"}, rows)
	fmt.Fprintln(r.out)
	fmt.Fprintln(r.out, "Where a running flow's bytes go: MEMORY USAGE (value + key + dict entry) of every key of one shard")
	fmt.Fprintln(r.out, "after the running-flow fill, by kind of key, divided by that shard's flows:")
	table(r.out, []string{"key kind", "keys in shard", "encodings", "bytes/key", "bytes/flow"}, breakdown)
	return nil
}

// withManager runs fn with a manager on a fresh private server (scripts
// loaded, pool warmed up) and kills the server afterwards.
func (r *runner) withManager(ctx context.Context, name string, fn func(srv *server, m *taskflow.Manager, prefix string) error) error {
	srv, err := r.startServer(ctx)
	if err != nil {
		return err
	}
	defer srv.kill()
	// The server is private: measure with the default prefix, since key
	// names are part of what a flow costs.
	prefix := taskflow.DefaultPrefix
	st, err := taskflow.NewRedisStore(srv.client, taskflow.WithPrefix(prefix))
	if err != nil {
		return err
	}
	if err := st.LoadScripts(ctx); err != nil {
		return err
	}
	// Open the pool's connections before the baseline is read.
	if err := parallel(ctx, r.sz.memWorkers, r.sz.memWorkers*20, func(ctx context.Context, i int) error {
		return srv.client.Ping(ctx).Err()
	}); err != nil {
		return err
	}
	return fn(srv, taskflow.NewManager(st), prefix)
}

// memFlowInput is the flow of the memory suite: a 5-key state.
func memFlowInput(i, owners int, longGoal bool) taskflow.CreateManagedInput {
	goal := "triage the inbox of kate@example.com"
	if longGoal {
		goal = "triage the inbox of kate@example.com, draft replies to every customer thread and flag the urgent!"
		goal = goal + strings.Repeat(".", max(100-len(goal), 0))
	}
	o := i % owners
	return taskflow.CreateManagedInput{
		ControllerID: "kate/inbox-triage", Goal: goal,
		OwnerSessionKey: fmt.Sprintf("agent:kate-%d:session:s-%d", o, o),
		RequesterOrigin: "user:kate", CurrentStep: "fetch",
		State: json.RawMessage(fmt.Sprintf(`{"customer":"acme-corp","n":"000000","priority":3,"tags":["inbox","triage"],"thread_id":"t-%07d"}`, i)),
	}
}

// flowBreakdown attributes a flow's bytes: MEMORY USAGE (key, value and
// dict entry) of every key in the sample flow's shard, grouped by the key's
// kind (flow, state, events, and each shard index), divided by the flows
// in that shard. What remains is the main dict's bucket array and
// allocator slack.
func flowBreakdown(ctx context.Context, c *redis.Client, prefix string, id uuid.UUID, perFlow float64) ([][]string, error) {
	tag := shardTag(prefix, id, defaultShards) + ":"
	var keys []string
	iter := c.Scan(ctx, 0, tag+"*", 5000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return nil, err
	}
	type group struct {
		keys  int
		bytes int64
		enc   map[string]int
	}
	groups := map[string]*group{}
	var order []string
	for start := 0; start < len(keys); start += 1000 {
		batch := keys[start:min(start+1000, len(keys))]
		pipe := c.Pipeline()
		usage := make([]*redis.IntCmd, len(batch))
		encs := make([]*redis.StringCmd, len(batch))
		for i, k := range batch {
			usage[i] = pipe.MemoryUsage(ctx, k, 0)
			encs[i] = pipe.ObjectEncoding(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("MEMORY USAGE: %w", err)
		}
		for i, k := range batch {
			kind, _, _ := strings.Cut(strings.TrimPrefix(k, tag), ":")
			g := groups[kind]
			if g == nil {
				g = &group{enc: map[string]int{}}
				groups[kind] = g
				order = append(order, kind)
			}
			g.keys++
			g.bytes += usage[i].Val()
			g.enc[encs[i].Val()]++
		}
	}
	flows := 0
	if g := groups["flow"]; g != nil {
		flows = g.keys
	}
	if flows == 0 {
		return nil, fmt.Errorf("no flow keys found under %s*", tag)
	}
	rank := map[string]int{"flow": 0, "state": 1, "events": 2}
	slices.SortFunc(order, func(a, b string) int {
		ra, oka := rank[a]
		rb, okb := rank[b]
		switch {
		case oka && okb:
			return ra - rb
		case oka:
			return -1
		case okb:
			return 1
		}
		return strings.Compare(a, b)
	})
	var rows [][]string
	var sum float64
	for _, kind := range order {
		g := groups[kind]
		encs := make([]string, 0, len(g.enc))
		for e := range g.enc {
			encs = append(encs, e)
		}
		slices.Sort(encs)
		each := float64(g.bytes) / float64(flows)
		sum += each
		rows = append(rows, []string{kind, n(g.keys), strings.Join(encs, ","), f(float64(g.bytes)/float64(g.keys), 0), f(each, 0)})
	}
	rows = append(rows, []string{"main dict buckets, allocator slack (difference)", "", "", "", f(perFlow-sum, 0)})
	rows = append(rows, []string{"total per flow (measured used_memory delta)", "", "", "", f(perFlow, 0)})
	return rows, nil
}

// memoryEarly measures kept early events: the bytes an event nobody waits
// for costs until it is taken or expires, with a 20-byte payload.
func (r *runner) memoryEarly(ctx context.Context, count int, add func(what string, count int, delta int64, target string, ok *bool)) error {
	payload := json.RawMessage(`{"reply":"ok-000001"}`)
	for _, v := range []struct {
		name, what string
		perPair    int
	}{
		{"meme1", "kept early event: ResumeByCorrelation, 1 event per correlation id, 20-byte payload", 1},
		{"meme10", "kept early event: ResumeByCorrelation, 10 events per correlation id, 20-byte payload", 10},
	} {
		err := r.withManager(ctx, v.name, func(srv *server, m *taskflow.Manager, prefix string) error {
			before, err := stableMemory(ctx, srv.client)
			if err != nil {
				return err
			}
			err = parallel(ctx, r.sz.memWorkers, count, func(ctx context.Context, i int) error {
				_, err := m.ResumeByCorrelation(ctx, "email.reply", fmt.Sprintf("<msg-%08d@example.com>", i/v.perPair), payload)
				return err
			})
			if err != nil {
				return err
			}
			after, err := stableMemory(ctx, srv.client)
			if err != nil {
				return err
			}
			add(v.what, count, after.data()-before.data(), "", nil)
			return nil
		})
		if err != nil {
			return err
		}
	}
	return r.withManager(ctx, "memei", func(srv *server, m *taskflow.Manager, prefix string) error {
		ids := make([]uuid.UUID, count)
		err := parallel(ctx, r.sz.memWorkers, count, func(ctx context.Context, i int) error {
			fl, err := m.CreateMirrored(ctx, memFlowInput(i, max(count/100, 1), false))
			if err != nil {
				return err
			}
			ids[i] = fl.ID
			return nil
		})
		if err != nil {
			return err
		}
		before, err := stableMemory(ctx, srv.client)
		if err != nil {
			return err
		}
		err = parallel(ctx, r.sz.memWorkers, count, func(ctx context.Context, i int) error {
			_, err := m.TryResumeExternal(ctx, ids[i], "email.reply", fmt.Sprintf("<msg-%08d@example.com>", i), payload)
			return err
		})
		if err != nil {
			return err
		}
		after, err := stableMemory(ctx, srv.client)
		if err != nil {
			return err
		}
		add("kept early event: TryResumeExternal to a running flow (kept for the flow), 20-byte payload", count, after.data()-before.data(), "", nil)
		return nil
	})
}
