package taskflow

import (
	"encoding/json"

	"github.com/google/uuid"
)

// Old names that mailbox_verify.go and mailbox_verify_test.go (moving to
// fsck on another branch) still use. Delete this file once they use
// parseEarlyEntry, keyspace.earlyPair and keyspace.earlyFlow.

func parseMboxEntry(entry string) (string, json.RawMessage, bool) { return parseEarlyEntry(entry) }

func (k keyspace) mbox(cp string) string { return k.earlyPair(cp) }

func (k keyspace) inbox(id uuid.UUID) string { return k.earlyFlow(id) }
