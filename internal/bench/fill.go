package bench

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/taskflow-dev/taskflow"
)

// defaultShards is the library's default shard count, which the direct
// fill below assumes.
const defaultShards = taskflow.DefaultShards

// shardOf computes a flow's shard exactly as keys.go does: the id's last
// 32 bits, modulo the shard count.
func shardOf(id uuid.UUID, shards int) int {
	return int(binary.BigEndian.Uint32(id[12:16]) % uint32(shards))
}

// shardTag is "<prefix>:{<shard>}", the start of every key of the shard.
func shardTag(prefix string, id uuid.UUID, shards int) string {
	return prefix + ":{" + strconv.Itoa(shardOf(id, shards)) + "}"
}

// waitFill writes waiting flows (timer waits) straight into Redis with
// pipelines, mirroring what CreateMirrored (empty state) followed by
// SetWaiting(timer) writes: the flow hash, its three events, the
// status, owner, controller and timers index entries, the search
// attributes and their indexes, and the shard's controllers set.
// checkFillFidelity proves the shape against the real Manager before a
// fill is trusted.
type waitFill struct {
	c       redis.UniversalClient
	prefix  string
	shards  int
	owners  int
	workers int
	batch   int
	// controller names flow i's controller (nil: fillController).
	controller func(i int) string
	// attrs gives flow i's search attributes (nil: none).
	attrs func(i int) map[string]string
}

const (
	// fillCalls is the call memory (lua/include/calls.lua) of a flow made by two
	// calls, with ids as long as the library's.
	fillCalls      = " fill0001: fill0002:"
	fillController = "kate/inbox-triage"
	fillGoal       = "triage the inbox of kate@example.com"
	fillOrigin     = "user:kate"
	fillStep       = "fetch"
)

// fillAttrs are the search attributes of the fidelity check's flow.
func fillAttrs(int) map[string]string { return map[string]string{"customer": "acme"} }

func fillOwner(i, owners int) string {
	o := i % owners
	return fmt.Sprintf("agent:kate-%d:session:s-%d", o, o)
}

// fill writes count waiting flows numbered from first; deadline gives
// each one's timer. It returns the ids.
func (w waitFill) fill(ctx context.Context, first, count int, created, waited time.Time, deadline func(i int) time.Time) ([]uuid.UUID, error) {
	ids := make([]uuid.UUID, count)
	for i := range ids {
		ids[i] = uuid.New()
	}
	batch := w.batch
	if batch <= 0 {
		batch = 500
	}
	workers := max(w.workers, 1)
	createdMs := strconv.FormatInt(created.UnixMilli(), 10)
	waitedMs := strconv.FormatInt(waited.UnixMilli(), 10)
	entryStarted := `["started",1,` + createdMs + `,{}]`
	err := parallel(ctx, workers, (count+batch-1)/batch, func(ctx context.Context, b int) error {
		pipe := w.c.Pipeline()
		for j := b * batch; j < min((b+1)*batch, count); j++ {
			id := ids[j]
			idStr := id.String()
			tag := shardTag(w.prefix, id, w.shards)
			owner := fillOwner(first+j, w.owners)
			ctl := fillController
			if w.controller != nil {
				ctl = w.controller(first + j)
			}
			createdPayload, _ := json.Marshal(map[string]string{
				"controller_id": ctl, "goal": fillGoal, "current_step": fillStep,
			})
			entryCreated := `["created",0,` + createdMs + `,` + string(createdPayload) + `]`
			at := deadline(first + j)
			wj, err := json.Marshal(taskflow.WaitTimer(at))
			if err != nil {
				return err
			}
			entryWaiting := `["waiting",2,` + waitedMs + `,{"wait":` + string(wj) + `}]`
			// "size": an empty object state (lua/include/state.lua counts
			// it 1); "eb": the audit log's bytes (lua/include/events.lua).
			eb := len(entryWaiting) + len(entryStarted) + len(entryCreated)
			fields := []any{
				"size", "1", "eb", strconv.Itoa(eb),
				"controller", ctl, "goal", fillGoal,
				"owner", owner, "origin", fillOrigin,
				"step", fillStep, "rev", "2",
				"created", createdMs, "updated", waitedMs,
				"status", "waiting", "seq", "3", "wait", string(wj),
				// The call memory of the two calls (create, wait) that made
				// the flow: ids of the library's length; the epoch of the
				// revision is the last call's id (lua/include/context.lua).
				"calls", fillCalls, "ep", "fill0002"}
			if w.attrs != nil {
				for name, v := range w.attrs(first + j) {
					fields = append(fields, "@"+name, v)
					pipe.ZAdd(ctx, tag+":attr:"+name+"="+v, redis.Z{Score: float64(created.UnixMilli()), Member: idStr})
				}
			}
			pipe.HSet(ctx, tag+":flow:"+idStr, fields...)
			// Newest first, as LPUSH leaves them.
			pipe.RPush(ctx, tag+":events:"+idStr, entryWaiting, entryStarted, entryCreated)
			pipe.ZAdd(ctx, tag+":status:waiting", redis.Z{Score: float64(waited.UnixMilli()), Member: idStr})
			pipe.ZAdd(ctx, tag+":owner:"+owner, redis.Z{Score: float64(created.UnixMilli()), Member: idStr})
			pipe.ZAdd(ctx, tag+":ctl:"+ctl, redis.Z{Score: float64(created.UnixMilli()), Member: idStr})
			pipe.ZAdd(ctx, tag+":timers", redis.Z{Score: float64(at.UnixMilli()), Member: idStr})
			// Started, it was ready once: its controller is in the shard's set.
			pipe.SAdd(ctx, tag+":controllers", ctl)
		}
		_, err := pipe.Exec(ctx)
		return err
	})
	return ids, err
}

// checkFillFidelity writes one flow with the Manager and one with the
// direct fill, with the same inputs and deadline, and compares every key
// they produced: names, types, hash fields and values, event entries,
// index memberships (timestamps masked). A difference means the library's
// layout changed and the fill must be updated.
func checkFillFidelity(ctx context.Context, c *redis.Client, prefixBase string) error {
	refPrefix, fillPrefix := prefixBase+"-ref", prefixBase+"-fill"
	defer func() {
		cctx, cancel := cleanupCtx(ctx)
		defer cancel()
		_, _ = deletePrefix(cctx, c, refPrefix)
		_, _ = deletePrefix(cctx, c, fillPrefix)
	}()
	st, err := taskflow.NewRedisStore(c, taskflow.WithPrefix(refPrefix))
	if err != nil {
		return err
	}
	m := taskflow.NewManager(st)
	deadline := time.Now().Add(48 * time.Hour).Truncate(time.Millisecond)
	fl, err := m.CreateMirrored(ctx, taskflow.CreateManagedInput{
		ControllerID: fillController, Goal: fillGoal, OwnerSessionKey: fillOwner(0, 1),
		RequesterOrigin: fillOrigin, CurrentStep: fillStep, State: json.RawMessage(`{}`),
		Attributes: fillAttrs(0),
	})
	if err != nil {
		return err
	}
	if _, err := m.SetWaiting(ctx, fl.ID, taskflow.WaitTimer(deadline)); err != nil {
		return err
	}
	now := time.Now()
	ids, err := waitFill{c: c, prefix: fillPrefix, shards: defaultShards, owners: 1, workers: 1, attrs: fillAttrs}.
		fill(ctx, 0, 1, now, now, func(int) time.Time { return deadline })
	if err != nil {
		return err
	}
	want, err := describeFlow(ctx, c, refPrefix, fl.ID)
	if err != nil {
		return err
	}
	got, err := describeFlow(ctx, c, fillPrefix, ids[0])
	if err != nil {
		return err
	}
	if !slices.Equal(want, got) {
		return fmt.Errorf("the direct fill no longer mirrors the library's keys:\n  manager: %s\n  fill:    %s",
			strings.Join(want, "\n           "), strings.Join(got, "\n           "))
	}
	return nil
}

var (
	reAtMs = regexp.MustCompile(`"at":\d+`)
	// reEntryAt masks the time of a compact audit entry, [kind,rev,at,...].
	reEntryAt = regexp.MustCompile(`^(\["[^"]*",\d+,)\d+`)
	// reCallID masks the call ids of a flow's call memory (random).
	reCallID = regexp.MustCompile(` [^ :]+:`)
	reShard  = regexp.MustCompile(`:\{\d+\}:`)
)

// describeFlow lists every shard key under prefix (one flow's worth) in a
// normalized form.
func describeFlow(ctx context.Context, c *redis.Client, prefix string, id uuid.UUID) ([]string, error) {
	var keys []string
	iter := c.Scan(ctx, 0, prefix+":*", 1000).Iterator()
	for iter.Next(ctx) {
		// Only the shards' keys: flow-space records such as
		// <prefix>:{meta}:layout are written once per space by the store.
		if reShard.MatchString(iter.Val()) {
			keys = append(keys, iter.Val())
		}
	}
	if err := iter.Err(); err != nil {
		return nil, err
	}
	norm := func(s string) string {
		s = strings.ReplaceAll(s, prefix, "P")
		s = strings.ReplaceAll(s, id.String(), "ID")
		return reShard.ReplaceAllString(s, ":{S}:")
	}
	var out []string
	for _, k := range keys {
		typ, err := c.Type(ctx, k).Result()
		if err != nil {
			return nil, err
		}
		line := norm(k) + " " + typ + ":"
		switch typ {
		case "hash":
			m, err := c.HGetAll(ctx, k).Result()
			if err != nil {
				return nil, err
			}
			fields := make([]string, 0, len(m))
			for f, v := range m {
				if f == "created" || f == "updated" {
					v = "T"
				}
				if f == "calls" {
					v = reCallID.ReplaceAllString(v, " C:")
				}
				if f == "ep" { // a call id (random)
					v = "C"
				}
				fields = append(fields, f+"="+v)
			}
			slices.Sort(fields)
			line += strings.Join(fields, ",")
		case "list":
			es, err := c.LRange(ctx, k, 0, -1).Result()
			if err != nil {
				return nil, err
			}
			for _, e := range es {
				line += " " + reEntryAt.ReplaceAllString(reAtMs.ReplaceAllString(e, `"at":T`), `${1}T`)
			}
		case "zset":
			zs, err := c.ZRangeWithScores(ctx, k, 0, -1).Result()
			if err != nil {
				return nil, err
			}
			for _, z := range zs {
				score := "T"
				if strings.HasSuffix(k, ":timers") {
					score = strconv.FormatFloat(z.Score, 'f', 0, 64)
				}
				line += " " + norm(fmt.Sprint(z.Member)) + "@" + score
			}
		case "set":
			ms, err := c.SMembers(ctx, k).Result()
			if err != nil {
				return nil, err
			}
			slices.Sort(ms)
			line += " " + strings.Join(ms, " ")
		default:
			line += " (unexpected type)"
		}
		out = append(out, line)
	}
	slices.Sort(out)
	return out, nil
}
