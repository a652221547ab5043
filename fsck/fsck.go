package fsck

// Problem is one broken invariant found by Verify.
type Problem struct {
	// Kind names the invariant, e.g. StatusIndexMissing or OrphanKey.
	Kind Kind `json:"kind"`
	// FlowID is the flow the problem concerns, when it names one.
	FlowID string `json:"flow_id,omitempty"`
	// Key is the Redis key at fault (for an index problem, the index).
	Key string `json:"key"`
	// Member is the entry at fault inside Key: the index entry for
	// StaleIndexEntry, the controller id missing from the set for
	// ControllerUnlisted, the claim id for BadClaim and ClaimUnindexed,
	// the unreadable entry for BadEarlyEvent, the schedule's name for the
	// schedule kinds. Empty for other kinds.
	Member string `json:"member,omitempty"`
	// Detail says what is wrong, for a person.
	Detail string `json:"detail"`
	// Repaired is true when Verify ran with WithRepair and fixed it.
	Repaired bool `json:"repaired"`
}

// Report is what Verify found.
type Report struct {
	// Shards is the number of shards checked.
	Shards int `json:"shards"`
	// Flows is the number of flow records seen, readable or not.
	Flows int `json:"flows"`
	// Keys is the number of keys the scan saw.
	Keys int `json:"keys"`
	// Problems lists what was found, shard by shard; it is empty, not
	// nil, when nothing was.
	Problems []Problem `json:"problems"`
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Unrepaired counts the problems left as they were.
func (r *Report) Unrepaired() int {
	n := 0
	for _, p := range r.Problems {
		if !p.Repaired {
			n++
		}
	}
	return n
}

// Option adjusts Verify.
type Option func(*Config)

// Config is what a Verify call was asked to do, built from its options by
// Apply. Callers pass Options; the checker reads the Config.
type Config struct {
	// Repair makes Verify fix what it can (WithRepair). Default false:
	// report only.
	Repair bool
}

// Apply returns the Config that opts describe, starting from the
// defaults (report only). Nil options are skipped.
func Apply(opts ...Option) Config {
	var c Config
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	return c
}

// WithRepair makes Verify fix what it finds: index entries are rebuilt
// from the flow records, stale entries dropped, and keys of flows that no
// longer exist deleted. Flow records and audit logs are never changed
// (see the package documentation for what each Kind's repair does).
func WithRepair() Option { return func(c *Config) { c.Repair = true } }
