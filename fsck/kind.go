package fsck

// Kind names the invariant a Problem breaks. Its value is stable: it is
// what `taskflow fsck` prints and writes in its JSON. The package
// documentation groups the kinds by what they mean and says which of
// them WithRepair fixes.
type Kind string

// The flow record. Not repaired: a record is never rewritten.
const (
	// BadFlow reports a flow hash that does not decode (a field of the
	// wrong form).
	BadFlow Kind = "bad_flow"
	// UnreadableFlow reports a flow key that is not a hash, or could not
	// be read.
	UnreadableFlow Kind = "unreadable_flow"
	// BadWait reports a wait that does not parse.
	BadWait Kind = "bad_wait"
	// WaitMissing reports a waiting flow without a wait.
	WaitMissing Kind = "wait_missing"
	// WaitExtra reports a flow that is not waiting but keeps a wait.
	WaitExtra Kind = "wait_extra"
	// BadIdempotency reports an idempotency fingerprint that is
	// malformed, or on a flow whose id is not derived from a key.
	BadIdempotency Kind = "bad_idempotency"
	// BadAttempts reports an attempts count that is not a positive
	// integer.
	BadAttempts Kind = "bad_attempts"
)

// The audit log. Not repaired: a log is never rewritten.
const (
	// EventsMissing reports a flow without any audit event.
	EventsMissing Kind = "events_missing"
	// BadEvent reports an audit entry that does not decode.
	BadEvent Kind = "bad_event"
	// EventRevision reports that the newest audit entry names another
	// revision than the flow's.
	EventRevision Kind = "event_revision"
)

// Steps.
const (
	// StepMissing reports that the step set names a step that has no
	// record. Not repaired.
	StepMissing Kind = "step_missing"
	// StepUnindexed reports a step record missing from its flow's step
	// set. Repaired: the step is added to the set.
	StepUnindexed Kind = "step_unindexed"
)

// Indexes: an entry the flow's record implies and the keyspace lacks
// (Missing), or one the keyspace holds and the record does not imply
// (Extra, Wrong, StaleIndexEntry). All are repaired, by rebuilding the
// flow's entries from its record or dropping the entry.
const (
	// StatusIndexMissing reports that the flow is not in its status's
	// index.
	StatusIndexMissing Kind = "status_index_missing"
	// StatusIndexExtra reports that the flow is in another status's
	// index.
	StatusIndexExtra Kind = "status_index_extra"
	// OwnerIndexMissing reports that the flow is not in its owner's
	// index.
	OwnerIndexMissing Kind = "owner_index_missing"
	// FindIndexMissing reports that the flow is not in its controller's
	// index or in the index of one of its search attributes (Find).
	FindIndexMissing Kind = "find_index_missing"
	// TimerMissing reports a waiting timer flow not in the timer set.
	TimerMissing Kind = "timer_missing"
	// TimerWrong reports a timer entry whose deadline is not the wait's.
	TimerWrong Kind = "timer_wrong"
	// TimerExtra reports a timer entry of a flow without a timer wait.
	TimerExtra Kind = "timer_extra"
	// CancelWaitMissing reports a waiting flow with a cancel request not
	// in the cancel set.
	CancelWaitMissing Kind = "cancelwait_missing"
	// CancelWaitExtra reports a cancel-set entry of a flow not waiting
	// with a cancel request.
	CancelWaitExtra Kind = "cancelwait_extra"
	// CorrMissing reports a waiting external-event flow not in the
	// correlation index.
	CorrMissing Kind = "corr_missing"
	// CorrExtra reports a correlation entry of a flow without an
	// external-event wait.
	CorrExtra Kind = "corr_extra"
	// ReadyMissing reports a running flow neither leased nor on its ready
	// queue (a flow with concurrency keys or a priority waits in the
	// gate instead: GateUnqueued).
	ReadyMissing Kind = "ready_missing"
	// ReadyExtra reports a flow on a ready queue that should not be
	// (leased, not running, or with concurrency keys or a priority,
	// which a shard's queue would let bypass the gate).
	ReadyExtra Kind = "ready_extra"
	// LeaseExpiryWrong reports a lease expiry entry that does not match
	// the lease.
	LeaseExpiryWrong Kind = "lease_expiry_wrong"
	// LeaseExpiryExtra reports a lease expiry entry without a lease.
	LeaseExpiryExtra Kind = "lease_expiry_extra"
	// LeaseExtra reports a lease of a flow that is not running.
	LeaseExtra Kind = "lease_extra"
	// StaleIndexEntry reports an index entry (Problem.Member) that names
	// no flow of the shard, or one the flow's record does not imply.
	StaleIndexEntry Kind = "stale_index_entry"
	// ControllerUnlisted reports a ready queue whose controller
	// (Problem.Member) is missing from the shard's controllers set.
	ControllerUnlisted Kind = "controller_unlisted"
)

// Keys.
const (
	// OrphanKey reports a key of a flow (events, steps, a step, its inbox
	// of kept early events) whose flow record is gone. Repaired: the key
	// is deleted (an inbox with its entries in the kept-event index).
	OrphanKey Kind = "orphan_key"
	// UnknownKey reports a key under the prefix that taskflow does not
	// write. Not repaired.
	UnknownKey Kind = "unknown_key"
	// WrongType reports a key of the wrong Redis type where an index or a
	// list is expected. Not repaired.
	WrongType Kind = "wrong_type"
)

// Kept early events and their claims. Not repaired: an expired list goes
// by itself, and the tick settles claims.
const (
	// EarlyNoTTL reports kept events without a TTL, which would never go
	// away.
	EarlyNoTTL Kind = "early_no_ttl"
	// EarlyWrongShard reports an early-event list (a pair's or a flow's)
	// outside the shard it is read from.
	EarlyWrongShard Kind = "early_wrong_shard"
	// BadEarlyEvent reports a kept event (Problem.Member) that does not
	// parse.
	BadEarlyEvent Kind = "bad_early_event"
	// BadClaim reports a claim that does not parse, or of another shard.
	BadClaim Kind = "bad_claim"
	// ClaimUnindexed reports a claim without a due entry, which the tick
	// never re-drives.
	ClaimUnindexed Kind = "claim_unindexed"
)

// A parent waiting on its children whose join could never complete:
// Problem.FlowID is the parent, Key its register of children and Member
// the child. Repaired by the join's policy: a missing or foreign child
// counts as failed (its outcome says why), an undelivered outcome is
// delivered.
const (
	// ChildMissing reports a child the parent started that is gone
	// (pruned by hand, or its start died before it was made).
	ChildMissing Kind = "child_missing"
	// ChildElsewhere reports a child that names another parent.
	ChildElsewhere Kind = "child_elsewhere"
	// ChildUndelivered reports a child that ended without its outcome
	// reaching its parent, and with no relay entry left to deliver it.
	ChildUndelivered Kind = "child_undelivered"
)

// The gate (the root package's gate.go): the lanes where ready flows with
// concurrency keys or a priority wait, and the slots their leases hold.
// Both are repaired.
const (
	// GateSlotOrphaned reports a slot (Problem.Member, '<flow id>|<lease
	// token>') in a key's held slots or the gate's admissions, live by
	// its score, whose flow does not hold that lease: the flow is gone,
	// no longer running, or leased under another token. The slot counts
	// against its key's concurrency until it expires. Repaired: the slots
	// go back (every key's, and the admission).
	GateSlotOrphaned Kind = "gate_slot_orphaned"
	// GateUnqueued reports a ready flow (running, unleased) with
	// concurrency keys or a priority that is neither on its lane in the
	// gate nor has a relay entry to queue it there, nor is being
	// admitted: no claim finds it. Repaired: it is queued on its lane.
	GateUnqueued Kind = "gate_unqueued"
)

// Schedules (the root package's schedules.go): Problem.Key is the
// schedule's hash or the index at fault, Member the schedule's name.
const (
	// BadSchedule reports a schedule hash that does not decode, or whose
	// timing does not parse. Not repaired.
	BadSchedule Kind = "bad_schedule"
	// ScheduleUnindexed reports a schedule missing from an index: from
	// the due index while neither paused nor done (it never fires), or
	// from the names index (ListSchedules does not show it). Repaired: the
	// schedule is put back, in the due index at its due time.
	ScheduleUnindexed Kind = "schedule_unindexed"
	// ScheduleIndexStale reports an index entry naming no schedule, or a
	// paused or done schedule in the due index. Repaired: the entry is
	// dropped.
	ScheduleIndexStale Kind = "schedule_index_stale"
)
