package taskflow

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
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

func TestLayoutRecordsPlacement(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		must(t, try(e.m.CreateMirrored(e.ctx, seedInput())))
		got := e.client.HGetAll(e.ctx, e.prefix+":{meta}:layout").Val()
		if got["shards"] != "16" || got["hash"] != layoutHash || len(got) != 2 {
			t.Fatalf("layout %v", got)
		}
	})
}

// A flow space written before the placement was recorded (FNV-1a) is
// refused, not misread, by every store that opens it.
func TestLayoutRefusesOldPlacement(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		key := e.prefix + ":{meta}:layout"
		e.client.HSet(e.ctx, key, "shards", "16")
		for i := 0; i < 2; i++ {
			m := NewManager(e.reopenStore(e.b.client(t)))
			_, err := m.Get(e.ctx, uuid.New())
			wantErr(t, err, ErrLayoutMismatch)
			if !strings.Contains(err.Error(), `"fnv32a"`) {
				t.Fatalf("unclear: %v", err)
			}
			// A write is refused too, and marks the space for every store.
			_, err = m.CreateManaged(e.ctx, seedInput())
			wantErr(t, err, ErrLayoutMismatch)
		}
		if got := e.client.HGet(e.ctx, key, "hash").Val(); got != legacyHash {
			t.Fatalf("layout hash %q, want %q recorded", got, legacyHash)
		}
	})
}
