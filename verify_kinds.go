package taskflow

// The kinds of Problem that Verify reports (Problem.Kind), by what they
// concern. "Repaired" names the kinds WithRepair fixes; the others need
// a person (they say what is wrong, not how it came to be).
const (
	// Flow record.

	// ProblemBadFlow reports a flow hash that does not decode (a field of
	// the wrong form).
	ProblemBadFlow = "bad_flow"
	// ProblemUnreadableFlow reports a flow key that is not a hash, or could
	// not be read.
	ProblemUnreadableFlow = "unreadable_flow"
	// ProblemBadWait reports a wait that does not parse.
	ProblemBadWait = "bad_wait"
	// ProblemWaitMissing reports a waiting flow without a wait.
	ProblemWaitMissing = "wait_missing"
	// ProblemWaitExtra reports a flow that is not waiting but keeps a wait.
	ProblemWaitExtra = "wait_extra"
	// ProblemBadIdempotency reports an idempotency fingerprint that is
	// malformed, or on a flow whose id is not derived from a key.
	ProblemBadIdempotency = "bad_idempotency"
	// ProblemBadAttempts reports an attempts count that is not a positive
	// integer.
	ProblemBadAttempts = "bad_attempts"

	// Audit log.

	// ProblemEventsMissing reports a flow without any audit event.
	ProblemEventsMissing = "events_missing"
	// ProblemBadEvent reports an audit entry that does not decode.
	ProblemBadEvent = "bad_event"
	// ProblemEventRevision reports that the newest audit entry names another
	// revision than the flow's.
	ProblemEventRevision = "event_revision"

	// Steps.

	// ProblemStepMissing reports that the step set names a step that has no
	// record.
	ProblemStepMissing = "step_missing"
	// ProblemStepUnindexed reports a step record missing from its flow's
	// step set. Repaired.
	ProblemStepUnindexed = "step_unindexed"

	// Indexes: an entry the flow's record implies and the keyspace lacks
	// (_missing), or one the keyspace holds and the record does not imply
	// (_extra, _wrong).

	// ProblemStatusIndexMissing reports that the flow is not in its status's
	// index. Repaired.
	ProblemStatusIndexMissing = "status_index_missing"
	// ProblemStatusIndexExtra reports that the flow is in another status's
	// index. Repaired.
	ProblemStatusIndexExtra = "status_index_extra"
	// ProblemOwnerIndexMissing reports that the flow is not in its owner's
	// index. Repaired.
	ProblemOwnerIndexMissing = "owner_index_missing"
	// ProblemTimerMissing reports a waiting timer flow not in the timer set.
	// Repaired.
	ProblemTimerMissing = "timer_missing"
	// ProblemTimerWrong reports a timer entry whose deadline is not the
	// wait's. Repaired.
	ProblemTimerWrong = "timer_wrong"
	// ProblemTimerExtra reports a timer entry of a flow without a timer
	// wait. Repaired.
	ProblemTimerExtra = "timer_extra"
	// ProblemCancelwaitMissing reports a waiting flow with a cancel request
	// not in the cancel set. Repaired.
	ProblemCancelwaitMissing = "cancelwait_missing"
	// ProblemCancelwaitExtra reports a cancel-set entry of a flow not
	// waiting with a cancel request. Repaired.
	ProblemCancelwaitExtra = "cancelwait_extra"
	// ProblemCorrMissing reports a waiting external-event flow not in the
	// correlation index. Repaired.
	ProblemCorrMissing = "corr_missing"
	// ProblemCorrExtra reports a correlation entry of a flow without an
	// external-event wait. Repaired.
	ProblemCorrExtra = "corr_extra"
	// ProblemReadyMissing reports a running flow neither leased nor on its
	// ready queue. Repaired.
	ProblemReadyMissing = "ready_missing"
	// ProblemReadyExtra reports a flow on a ready queue that should not be
	// (leased, or not running). Repaired.
	ProblemReadyExtra = "ready_extra"
	// ProblemLeaseExpiryWrong reports a lease expiry entry that does not
	// match the lease. Repaired.
	ProblemLeaseExpiryWrong = "lease_expiry_wrong"
	// ProblemLeaseExpiryExtra reports a lease expiry entry without a lease.
	// Repaired.
	ProblemLeaseExpiryExtra = "lease_expiry_extra"
	// ProblemLeaseExtra reports a lease of a flow that is not running.
	// Repaired.
	ProblemLeaseExtra = "lease_extra"
	// ProblemStaleIndexEntry reports an index entry that names no flow of
	// the shard, or one the flow's record does not imply. Repaired.
	ProblemStaleIndexEntry = "stale_index_entry"
	// ProblemControllerUnlisted reports a ready queue whose controller is
	// missing from the shard's controllers set. Repaired.
	ProblemControllerUnlisted = "controller_unlisted"

	// Keys.

	// ProblemOrphanKey reports a key of a flow (events, steps, a step, its
	// inbox of kept early events) whose flow record is gone. Repaired (an
	// inbox with its entries in the kept-event index).
	ProblemOrphanKey = "orphan_key"
	// ProblemUnknownKey reports a key under the prefix that taskflow does
	// not write.
	ProblemUnknownKey = "unknown_key"
	// ProblemWrongType reports a key of the wrong Redis type where an index
	// or a list is expected.
	ProblemWrongType = "wrong_type"

	// The mailbox for early events (mailbox.go).

	// ProblemEarlyNoTtl reports kept events without a TTL, which would never
	// go away.
	ProblemEarlyNoTtl = "early_no_ttl"
	// ProblemEarlyWrongShard reports a mailbox or inbox outside the shard it
	// is read from.
	ProblemEarlyWrongShard = "early_wrong_shard"
	// ProblemBadEarlyEvent reports a kept event that does not parse.
	ProblemBadEarlyEvent = "bad_early_event"
	// ProblemBadClaim reports a claim that does not parse, or of another
	// shard.
	ProblemBadClaim = "bad_claim"
	// ProblemClaimUnindexed reports a claim without a due entry, which the
	// tick never re-drives.
	ProblemClaimUnindexed = "claim_unindexed"
)
