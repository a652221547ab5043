// Package fsck is the vocabulary of taskflow's consistency check: what
// Manager.Verify (and `taskflow fsck`) reports, and the option that makes
// it repair. The check itself lives in the taskflow package, beside the
// store whose keys it reads; this package holds only what a caller names,
// so it imports nothing of taskflow.
//
//	rep, err := m.Verify(ctx)                   // report only
//	rep, err := m.Verify(ctx, fsck.WithRepair()) // report and repair
//	if err == nil && !rep.OK() {
//		for _, p := range rep.Problems {
//			fmt.Println(p.Kind, p.FlowID, p.Key, p.Detail, p.Repaired)
//		}
//	}
//
// # What Verify checks
//
// Verify walks the flow space shard by shard (a SCAN of each shard's
// keys) and checks every invariant taskflow's scripts maintain. A flow's
// record (its hash) is the truth; every other key is derived from it:
//
//   - the flow is in exactly its status's index, and in its owner's;
//   - a waiting flow has a wait, and only waiting flows do; a waiting
//     timer flow is in the shard's timer set at its deadline, and no
//     other flow is; correlation entries point at flows waiting for them;
//     the cancel set holds exactly the waiting flows with a cancel
//     request;
//   - a running flow is either leased or on its controller's ready queue,
//     never both, and only running flows hold a lease;
//   - the newest audit event carries the flow's revision;
//   - every step in a flow's step set has its record, and every step
//     record is in the set;
//   - no key is left of a flow that does not exist (kept early events
//     included), and no key under the prefix is one taskflow does not
//     write;
//   - a flow made with an idempotency key has a version 5 id and a
//     well-formed input fingerprint; an attempts count is a positive
//     integer;
//   - kept early events sit in lists with a TTL, readable, on the shard
//     that reads them, and every claim of one has its due entry;
//   - a ready flow with concurrency keys or a priority waits on its lane
//     in the gate (or has a relay entry, or an admission, that puts it
//     there or takes it), never on a shard's ready queue; every live slot
//     the gate holds belongs to its flow's live lease.
//
// Verify runs beside live workers. A problem is reported only if a
// re-check, which reads the flow together with what it is compared with
// in one atomic step, still sees it: a flow that moved while Verify
// looked is not a problem.
//
// # Kinds of problem, and what repair does
//
// Each Problem names its Kind. A Kind's value is its constant's name in
// snake case (OrphanKey is "orphan_key", CancelWaitMissing
// "cancelwait_missing"); the values are stable, as they appear in
// `taskflow fsck` output and its JSON.
//
// With WithRepair, Verify rebuilds index entries from the flow records,
// drops stale entries and deletes the keys of flows that no longer exist.
// A repair of a flow's entries applies only if the flow is still at the
// revision it read, else it reads the flow again (three times at most; a
// flow that keeps changing is left, its problems marked not repaired).
// Flow records, audit logs and step records are never rewritten: what is
// wrong in them needs a person, and Verify reports it with
// Problem.Repaired false.
//
// The flow record (needs a person):
//
//   - BadFlow: the hash does not decode (a field of the wrong form).
//   - UnreadableFlow: the flow key is not a hash, or could not be read.
//   - BadWait: the wait does not parse.
//   - WaitMissing: a waiting flow without a wait.
//   - WaitExtra: a flow that is not waiting keeps a wait.
//   - BadIdempotency: a malformed idempotency fingerprint, or one on a
//     flow whose id is not derived from a key.
//   - BadAttempts: an attempts count that is not a positive integer.
//
// The audit log (needs a person):
//
//   - EventsMissing: a flow without any audit event.
//   - BadEvent: an audit entry that does not decode.
//   - EventRevision: the newest audit entry names another revision than
//     the flow's.
//
// Steps:
//
//   - StepMissing: the step set names a step that has no record (needs a
//     person).
//   - StepUnindexed: a step record missing from its flow's step set.
//     Repair adds it to the set.
//
// Indexes, all repaired by rebuilding the flow's entries from its record
// (Missing: an entry the record implies and the keyspace lacks; Extra and
// Wrong: one the keyspace holds and the record does not imply):
//
//   - StatusIndexMissing, StatusIndexExtra: the flow is not in its
//     status's index, or is in another status's.
//   - OwnerIndexMissing: the flow is not in its owner's index.
//   - FindIndexMissing: the flow is not in its controller's index, or
//     in the index of one of its search attributes (Find).
//   - TimerMissing, TimerWrong, TimerExtra: a waiting timer flow not in
//     the timer set, at another deadline than its wait's, or a timer
//     entry of a flow without a timer wait.
//   - CancelWaitMissing, CancelWaitExtra: a waiting flow with a cancel
//     request not in the cancel set, or an entry of a flow that is not.
//   - CorrMissing, CorrExtra: a waiting external-event flow not in the
//     correlation index, or an entry of a flow without such a wait.
//   - ReadyMissing, ReadyExtra: a running flow neither leased nor on its
//     ready queue, or a flow on a ready queue that should not be (leased,
//     not running, or carrying concurrency keys or a priority: such a
//     flow waits on its lane in the gate instead, and its repair has an
//     engine's tick queue it there).
//   - LeaseExpiryWrong, LeaseExpiryExtra, LeaseExtra: a lease expiry
//     entry that does not match the lease, one without a lease, or a lease
//     of a flow that is not running.
//   - StaleIndexEntry: an index entry that names no flow of the shard, or
//     one the flow's record does not imply (Problem.Member is the entry).
//     Repair drops it.
//   - ControllerUnlisted: a ready queue whose controller is missing from
//     the shard's controllers set (a flow space written before the set
//     existed), so Stats does not see it. Repair adds the controller
//     (Problem.Member).
//
// Keys:
//
//   - OrphanKey: a key of a flow (its events, steps, a step, its inbox of
//     kept early events) whose flow record is gone. Repair deletes it (an
//     inbox with its entries in the kept-event index).
//   - UnknownKey: a key under the prefix that taskflow does not write
//     (needs a person).
//   - WrongType: a key of the wrong Redis type where an index or a list
//     is expected (needs a person).
//
// Kept early events and their claims (not repaired: an expired list goes
// by itself, and the tick settles claims):
//
//   - EarlyNoTTL: kept events without a TTL, which would never go away.
//   - EarlyWrongShard: an early-event list (a pair's or a flow's) outside
//     the shard it is read from, so never read.
//   - BadEarlyEvent: a kept event that does not parse (Problem.Member is
//     the entry).
//   - BadClaim: a claim that does not parse, or of another shard.
//   - ClaimUnindexed: a claim without a due entry, which the tick never
//     re-drives.
//
// The gate, where ready flows with concurrency keys or a priority wait
// and the leases of their keys hold slots (both repaired). A scan of
// the gate reads at most 10,000 live slots per pass; a flow is judged
// after reading, in order, its relay entry, its lane, the live
// admissions and its lease again, so one that moved on meanwhile is not
// reported:
//
//   - GateSlotOrphaned: a live slot (Problem.Member '<flow id>|<lease
//     token>', Problem.Key the key's held slots or the admissions) whose
//     flow is gone, no longer running, or leased under another token.
//     Repair gives the admission's slots back. A slot of a running flow
//     leased to nobody is not reported: a worker may be taking its lease
//     now, and if it died the engine's tick settles the slot when it
//     expires.
//   - GateUnqueued: a ready flow with concurrency keys or a priority on
//     no lane, with no relay entry to queue it and no admission: no
//     claim finds it. Repair queues it on its lane.
//
// Schedules (Problem.Member is the schedule's name; each repair is a
// compare-and-set on the schedule as read, so a schedule changed
// meanwhile is left, not repaired):
//
//   - BadSchedule: a schedule hash that does not decode, or whose timing
//     does not parse (needs a person).
//   - ScheduleUnindexed: a schedule neither paused nor done missing from
//     the due index (it never fires), or one missing from the names
//     index. Repair puts it back.
//   - ScheduleIndexStale: a due or names entry naming no schedule, or a
//     paused or done schedule in the due index. Repair drops the entry.
//
// A parent waiting on its children whose join could never complete
// (Problem.FlowID is the parent, Member the child; repaired by the
// join's policy):
//
//   - ChildMissing: a child the parent started is gone; repaired by
//     counting it as failed.
//   - ChildElsewhere: a child names another parent; repaired so too.
//   - ChildUndelivered: a child ended, its outcome never reached its
//     parent and no relay entry is left to take it; repaired by
//     delivering it.
package fsck
