package masterwatch

import (
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestNewWatchesOnlyFailoverClients(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	if New(c) != nil {
		t.Fatal("a plain client's address does not change: no watch")
	}
	f := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "m", SentinelAddrs: []string{"127.0.0.1:1"}})
	defer f.Close()
	if New(f) == nil {
		t.Fatal("a failover client is watched")
	}
}

func TestADialElsewhereIsAChange(t *testing.T) {
	w := &Watch{changed: make(chan struct{})}
	w.dialed("10.0.0.1:6379")
	epoch, changed := w.Current()
	if epoch != 0 {
		t.Fatalf("the first dial is no change: epoch %d", epoch)
	}
	w.dialed("10.0.0.1:6379")
	select {
	case <-changed:
		t.Fatal("a dial to the same master is no change")
	default:
	}
	w.dialed("10.0.0.2:6379")
	select {
	case <-changed:
	default:
		t.Fatal("a dial to another master closes the channel")
	}
	if epoch, _ := w.Current(); epoch != 1 {
		t.Fatalf("epoch %d after one change, want 1", epoch)
	}
}
