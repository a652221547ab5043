package main

import (
	"testing"

	"github.com/google/uuid"
)

// Reading commands on a prefix with no data write nothing: a mistyped
// --prefix or --shards must not pin a new flow space's layout.
func TestReadingCommandsWriteNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		e.run("list").wantCode(t, 0)
		e.run("list", "--shards", "3").wantCode(t, 0)
		e.run("fsck").wantCode(t, 0)
		e.run("show", uuid.NewString())
		if keys := e.scanKeys(e.prefix + ":*"); len(keys) != 0 {
			t.Fatalf("reading commands wrote %v", keys)
		}
	})
}
