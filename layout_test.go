package taskflow

import (
	"errors"
	"testing"

	"github.com/google/uuid"
)

// Reading an empty flow space writes nothing; the first write records the
// layout, and a store with another shard count is refused after that.
func TestReadingNeverWritesLayout(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		s := e.reopenStore(e.client)
		m := NewManager(s)
		if err := s.LoadScripts(e.ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := m.ListByStatus(e.ctx, StatusRunning); err != nil {
			t.Fatal(err)
		}
		if _, err := m.ListRecent(e.ctx, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Get(e.ctx, uuid.New()); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get: %v", err)
		}
		if _, err := m.ListEvents(e.ctx, uuid.New(), 10); err != nil {
			t.Fatal(err)
		}
		if rep, err := s.Verify(e.ctx); err != nil || !rep.OK() {
			t.Fatalf("Verify: %+v %v", rep, err)
		}
		if keys := e.dump(); len(keys) != 0 {
			t.Fatalf("reading an empty flow space wrote %v", keys)
		}
		// Another shard count reads the empty space without complaint.
		other, err := NewRedisStore(e.client, append(e.options, WithShards(3))...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := NewManager(other).ListByStatus(e.ctx, StatusRunning); err != nil {
			t.Fatalf("empty space with another shard count: %v", err)
		}
		if _, err := m.CreateManaged(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"}); err != nil {
			t.Fatal(err)
		}
		if n := e.client.Exists(e.ctx, s.keys.layout()).Val(); n != 1 {
			t.Fatal("the first write did not record the layout")
		}
		third, err := NewRedisStore(e.client, append(e.options, WithShards(3))...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := NewManager(third).ListByStatus(e.ctx, StatusRunning); !errors.Is(err, ErrLayoutMismatch) {
			t.Fatalf("list with another shard count: %v, want ErrLayoutMismatch", err)
		}
		if _, err := NewManager(third).CreateManaged(e.ctx, CreateManagedInput{ControllerID: "c", Goal: "g", OwnerSessionKey: "o"}); !errors.Is(err, ErrLayoutMismatch) {
			t.Fatalf("create with another shard count: %v, want ErrLayoutMismatch", err)
		}
	})
}
