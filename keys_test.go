package taskflow

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskflow-dev/taskflow/fsck"
)

// The shard of a flow is computable by hand from its id: its last 8 hex
// digits modulo the shard count, and the flow's keys are where the
// README's key table says.
func TestShardOfByHand(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		for i := 0; i < 20; i++ {
			f := must(t, try(e.m.CreateMirrored(e.ctx, seedInput())))
			ids := f.ID.String()
			tail, err := strconv.ParseUint(ids[len(ids)-8:], 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			shard := int(tail % uint64(e.store.Shards()))
			if got := e.store.ShardOf(f.ID); got != shard {
				t.Fatalf("ShardOf(%s) = %d, by hand %d", ids, got, shard)
			}
			key := e.prefix + ":{" + strconv.Itoa(shard) + "}:flow:" + ids
			if n := e.client.Exists(e.ctx, key).Val(); n != 1 {
				t.Fatalf("no key %s", key)
			}
		}
	})
}

// TestFlowKeysAndID: the keys and id text cut from one string are the
// flow's keys as each key function names them, and id.String().
func TestFlowKeysAndID(t *testing.T) {
	k := newKeyspace("tf", 16)
	for i := 0; i < 100; i++ {
		id := uuid.New()
		if i == 0 {
			id = uuid.UUID{0xff, 0, 0xab, 0x10, 9: 0xcd, 15: 0xef}
		}
		keys, ids := k.flowKeysAndID(id)
		if ids != id.String() {
			t.Fatalf("id text %q, want %q", ids, id.String())
		}
		shard := k.shardOf(id)
		want := append([]string{k.flow(id), k.events(id), k.steps(id)}, k.fixed[shard]...)
		if !slices.Equal(keys, want) {
			t.Fatalf("keys %q, want %q", keys, want)
		}
		if got := k.flowKeys(id, "o"); !slices.Equal(got, append(want, k.owner(shard, "o"))) {
			t.Fatalf("keys with an owner %q", got)
		}
	}
}

// TestACLUserLimitedToPrefix runs a whole workload as a Redis user that
// may only touch the prefix's keys and only the commands above: with the
// commands of Redis Functions the store calls the library, without them
// (no +function|load) it falls back to EVALSHA.
func TestACLUserLimitedToPrefix(t *testing.T) {
	srv := startRedisServer(t)
	admin := srv.client(t)
	for _, functions := range []bool{true, false} {
		name := "functions"
		if !functions {
			name = "evalsha"
		}
		t.Run(name, func(t *testing.T) {
			prefix := randomPrefix()
			ctx := context.Background()
			if err := admin.Do(ctx, aclSetUser(prefix, functions)...).Err(); err != nil {
				t.Fatal(err)
			}
			admin.Set(ctx, "secret:key", "do not read", 0)
			b := backend{name: "acl", real: true, client: func(t testing.TB) redis.UniversalClient {
				c := redis.NewClient(&redis.Options{Addr: srv.addr(), Username: "taskflow", Password: "s3cret"})
				t.Cleanup(func() { _ = c.Close() })
				return c
			}}
			c := b.client(t)
			s, err := NewRedisStore(c, WithPrefix(prefix))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.LoadScripts(ctx); err != nil {
				t.Fatal(err)
			}
			if got := s.scripts.mode.Load() == modeFunctions; got != functions {
				t.Fatalf("the store calls functions: %v, want %v", got, functions)
			}
			e := &env{t: t, b: b, client: c, prefix: prefix, clock: newFakeClock(), ctx: ctx, store: s, m: NewManager(s)}
			e.options = []StoreOption{WithPrefix(prefix)}
			if err := s.LoadScripts(ctx); err != nil {
				t.Fatal(err)
			}
			fs := driveEveryStatus(t, e)
			eng := NewWaitEngine(e.m, WithLogger(quietLogger()), WithBridgeBlock(20*time.Millisecond))
			if rep := eng.TickAt(ctx, time.Now().Add(2*time.Hour)); rep.Errors != 0 || rep.Resumed != 1 || rep.Cancelled != 1 {
				t.Fatalf("tick as the limited user: %+v (%v)", rep, rep.Err)
			}
			if err := e.m.PublishResume(ctx, ResumeRequest{FlowID: fs["external"].ID, Topic: "mail", CorrelationID: "m-1"}); err != nil {
				t.Fatal(err)
			}
			bctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			go func() { _ = eng.RunResumeBridge(bctx) }()
			for bctx.Err() == nil && eng.BridgeStats().Handled == 0 {
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			if st := eng.BridgeStats(); st.Resumed != 1 {
				t.Fatalf("bridge as the limited user: %+v", st)
			}
			// Early events: kept by flow id and by correlation, then taken.
			for _, byID := range []bool{true, false} {
				f := must(t, try(e.m.CreateMirrored(ctx, seedInput())))
				var err error
				if byID {
					_, err = e.m.TryResumeExternal(ctx, f.ID, "acl", "early", 1)
				} else {
					_, err = e.m.ResumeByCorrelation(ctx, "acl", "early", 1)
				}
				if err != nil {
					t.Fatal(err)
				}
				if n, err := s.countEarlyEvents(ctx); n != 1 || err != nil {
					t.Fatalf("kept events as the limited user: %d %v", n, err)
				}
				if w := must(t, try(e.m.SetWaiting(ctx, f.ID, WaitExternalEvent("acl", "early")))); w.Status != StatusRunning {
					t.Fatalf("early event not taken as the limited user: %s", w.Status)
				}
			}
			if _, err := e.m.ListByOwner(ctx, seedInput().OwnerSessionKey); err != nil {
				t.Fatal(err)
			}
			if _, err := e.m.ListRecent(ctx, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := e.m.Stats(ctx); err != nil {
				t.Fatalf("stats as the limited user: %v", err)
			}
			rep, err := e.m.Verify(ctx, fsck.WithRepair())
			if err != nil || !rep.OK() {
				t.Fatalf("verify as the limited user: %v %+v", err, rep)
			}
			if _, err := e.m.PruneTerminalFlows(ctx, 0); err != nil {
				t.Fatal(err)
			}
			// Outside the prefix, nothing.
			if err := c.Get(ctx, "secret:key").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
				t.Fatalf("read outside the prefix: %v", err)
			}
			other, _ := NewRedisStore(c, WithPrefix("other"))
			if _, err := NewManager(other).CreateManaged(ctx, seedInput()); err == nil || !strings.Contains(err.Error(), "NOPERM") {
				t.Fatalf("write outside the prefix: %v", err)
			}
			if err := c.FlushAll(ctx).Err(); err == nil {
				t.Fatal("FLUSHALL allowed")
			}
		})
	}
}

// aclCommands is every command taskflow sends, directly or from its
// scripts: the README's ACL example grants exactly these.
var aclCommands = []string{
	// connection
	"ping", "hello",
	// scripts and what they call
	"fcall", "fcall_ro", "function|load", "evalsha", "eval", "script|load", "exists", "hgetall", "hget", "hmget", "hkeys", "hset", "hdel", "hincrby", "hstrlen",
	"del", "zadd", "zrem", "zscore", "zcard", "zrange", "sadd", "srem", "sismember",
	"lpush", "ltrim", "lindex",
	// reads, lists, ticks
	"lrange", "zrangebyscore", "zrevrangebyscore", "zrevrange", "zcount", "zrangebylex", "srandmember", "zscan", "sscan", "scan", "type",
	// the resume bridge
	// fleet hand-off and watching
	"publish", "subscribe", "unsubscribe", "hscan", "set",
	"xadd", "xgroup|create", "xgroup|delconsumer", "xreadgroup", "xautoclaim", "xack", "xdel", "xlen", "xpending",
	"multi", "exec",
	// the layout check
	"hsetnx",
	// Stats
	"smembers", "hlen", "xinfo|groups",
	// early events
	"rpush", "lpop", "lrem", "llen", "pexpire", "pttl", "hexists", "get", "zremrangebyrank",
	// the audit log's byte bound
	"rpop",
}

// aclSetUser grants aclCommands, without the commands of Redis Functions
// unless functions.
func aclSetUser(prefix string, functions bool) []any {
	args := []any{"ACL", "SETUSER", "taskflow", "reset", "on", ">s3cret", "~" + prefix + ":*", "resetchannels", "&" + prefix + ":*", "-@all"}
	for _, c := range aclCommands {
		if !functions && (c == "fcall" || c == "fcall_ro" || c == "function|load") {
			continue
		}
		args = append(args, "+"+c)
	}
	return args
}
