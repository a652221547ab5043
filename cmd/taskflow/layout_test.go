package main

import (
	"testing"

	"github.com/google/uuid"
)

// Reading commands on a prefix with no data write nothing: a mistyped
// --prefix or --shards must not pin a new flow space's layout.
func TestReadingCommandsWriteNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *testEnv) {
		// An unknown flow space is named as such (exit 1), and left alone.
		e.run("list").wantCode(t, 1)
		e.run("list", "--shards", "3").wantCode(t, 1)
		e.run("fsck").wantCode(t, 1)
		e.run("show", uuid.NewString()).wantCode(t, 1)
		if keys := e.scanKeys(e.prefix + ":*"); len(keys) != 0 {
			t.Fatalf("reading commands wrote %v", keys)
		}
	})
}
