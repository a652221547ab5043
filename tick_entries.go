package taskflow

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// tickEntry is one member of a shard index the tick read.
type tickEntry struct {
	kind  entryKind
	shard int
	raw   string
}

// errStaleEntry: a tick script found that its index entry named no flow it
// could act on, and dropped the entry.
var errStaleEntry = errors.New("taskflow: stale index entry")

// entryFlow returns the flow an entry names, and false when it names none
// of this shard: not a UUID in its canonical form (a script would remove
// the canonical form and leave the entry), or a flow of another shard
// (whose script would work on the other shard's index).
func (e *WaitEngine) entryFlow(ent tickEntry) (uuid.UUID, bool) {
	id, err := uuid.Parse(ent.raw)
	if err != nil || id.String() != ent.raw || e.s.keys.shardOf(id) != ent.shard {
		return uuid.Nil, false
	}
	return id, true
}

// indexKey is the index an entry came from.
func (e *WaitEngine) indexKey(ent tickEntry) string {
	switch ent.kind {
	case entryCancel:
		return e.s.keys.cancelWait(ent.shard)
	case entryLease:
		return e.s.keys.leaseExp(ent.shard)
	default:
		return e.s.keys.timers(ent.shard)
	}
}

// dropEntries removes entries from their indexes in one pipeline, counts
// them in rep.Dropped and returns how many left each shard's indexes.
func (e *WaitEngine) dropEntries(ctx context.Context, drops []tickEntry, rep *TickReport) map[int]int {
	out := map[int]int{}
	if len(drops) == 0 {
		return out
	}
	pipe := e.s.client.Pipeline()
	cmds := make([]*redis.IntCmd, len(drops))
	for i, ent := range drops {
		if ent.kind == entryCancel {
			cmds[i] = pipe.SRem(ctx, e.indexKey(ent), ent.raw)
		} else {
			cmds[i] = pipe.ZRem(ctx, e.indexKey(ent), ent.raw)
		}
	}
	_, _ = pipe.Exec(ctx)
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			rep.fail(err)
			continue
		}
		// Gone already (another engine) is progress too.
		out[drops[i].shard]++
		rep.Dropped += int(c.Val())
	}
	return out
}

// soundShards reports, for the shards of entries, whether every index
// the flow scripts touch has its type (or does not exist). Each unsound
// shard is reported once in rep.
func (e *WaitEngine) soundShards(ctx context.Context, entries []tickEntry, rep *TickReport) map[int]bool {
	want := func(key string, shard int) string {
		switch key {
		case e.s.keys.cancelWait(shard):
			return "set"
		case e.s.keys.leases(shard):
			return "hash"
		}
		return "zset"
	}
	out := map[int]bool{}
	pipe := e.s.client.Pipeline()
	types := map[int]map[string]*redis.StatusCmd{}
	for _, ent := range entries {
		if types[ent.shard] != nil {
			continue
		}
		types[ent.shard] = map[string]*redis.StatusCmd{}
		fixed := e.s.keys.fixed[ent.shard]
		for _, key := range fixed[:len(fixed)-1] { // the last is the shard base, not a key
			types[ent.shard][key] = pipe.Type(ctx, key)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		rep.fail(fmt.Errorf("taskflow: tick: %w", err))
		return out
	}
	for shard, keys := range types {
		out[shard] = true
		for key, c := range keys {
			if typ := c.Val(); typ != "none" && typ != want(key, shard) {
				out[shard] = false
				rep.fail(fmt.Errorf("taskflow: tick: %s is a %s, not a %s: the shard's entries stay until it is fixed", key, typ, want(key, shard)))
				break
			}
		}
	}
	return out
}

// transientError reports an error that says nothing about the entry: the
// connection, the context, or a server that is busy, full, loading or
// changing roles. Any other error reply of a tick script is about the
// flow's data.
func transientError(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return true
	}
	msg := rerr.Error()
	for _, p := range []string{"OOM", "BUSY", "LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN",
		"TRYAGAIN", "NOSCRIPT", "NOREPLICAS", "MISCONF", "MOVED", "ASK", "EXECABORT", "ERR max number of clients"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// entryKind says which index a tick entry came from.
type entryKind int

const (
	entryCancel entryKind = iota
	entryTimer
	entryLease
)
