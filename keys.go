package taskflow

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"unicode"

	"github.com/google/uuid"
)

// keyspace builds every Redis key of a flow space; nothing else in the
// package formats a key.
//
// A flow lives in one of a fixed number of shards, chosen by its id's
// last 8 hex digits (shardOf). Each shard has a hash tag, {<n>}, shared by the flow's own keys and
// the shard's indexes, so every script touches one cluster slot:
//
//	<prefix>:{<n>}:flow:<id>          hash: the flow record, and the state
//	                                  ("$<key>" -> raw JSON of a top-level key)
//	<prefix>:{<n>}:events:<id>        list: audit entries, newest first
//	<prefix>:{<n>}:steps:<id>         zset: run id by insertion order
//	<prefix>:{<n>}:step:<id>:<run>    hash: one step
//	<prefix>:{<n>}:status:<status>    zset: flow id by time it entered status
//	<prefix>:{<n>}:owner:<owner>      zset: flow id by creation time
//	<prefix>:{<n>}:ctl:<controller>   zset: flow id by creation time (Find)
//	<prefix>:{<n>}:attr:<name>=<value>
//	                                  zset: flow id by creation time, the flows
//	                                  whose search attribute name is value (Find)
//	<prefix>:{<n>}:timers             zset: waiting flow id by deadline
//	<prefix>:{<n>}:cancelwait         set:  waiting flows with a cancel request
//	<prefix>:{<n>}:corr               zset: correlation members (lex order)
//	<prefix>:{<n>}:ready:<controller> zset: runnable unleased flows by time
//	<prefix>:{<n>}:controllers        set:  controller ids with a ready queue (Stats)
//	<prefix>:{<n>}:leases             hash: flow id -> "<token>|<expiry ms>|<worker JSON>",
//	                                  and t:<token> -> flow id while that lease
//	                                  lives (a re-sent claim gets the same flow)
//	<prefix>:{<n>}:leasexp            zset: leased flow id by lease expiry
//	<prefix>:{<n>}:ticklock           string: the engine working on the shard (5 s)
//	<prefix>:{<n>}:watched            string: someone watches the shard (Watch, 30 s):
//	                                  mutations announce their events only then
//	<prefix>:{<n>}:inbox:<id> …       early events: see below and early.go
//	<prefix>:{meta}:layout            hash: shards (the flow space's shard count),
//	                                  hash (the placement of flows: layoutHash)
//	<prefix>:{bridge}:resume          stream: the resume bridge's requests
//	<prefix>:{sched}:s:<name>         hash: a schedule (schedules.go): spec JSON,
//	                                  id, rev, next/due/buffered ms, done, last
//	                                  flow, last fire, fired/skipped counters,
//	                                  error (a failed fire), call (the last
//	                                  write's call id: a repeat is no change)
//	<prefix>:{sched}:due              zset: schedule name by due ms (next fire +
//	                                  jitter); absent when paused or done
//	<prefix>:{sched}:names            zset: every schedule name, score 0 (lex order)
//	<prefix>:{sched}:hist:<name>      list: a schedule's last 100 fires and skips,
//	                                  newest first
//	<prefix>:{sched}:stats            hash: fires, skips, paused: totals of the flow space
//	<prefix>:{sched}:ticklock         string: the engine working on schedules (5 s)
//	<prefix>:{sched}:gone:<name>      string: the call id of the delete of a schedule
//	                                  (a minute: a repeat after a lost reply succeeds)
type keyspace struct {
	prefix string
	shards int
	// fixed holds, per shard, the keys of the flow key set that do not
	// depend on the flow (built once: the hot path only appends).
	fixed [][]string
	// tags holds tag(shard) of every shard, built once.
	tags []string
	// boxed holds every key of fixed as an interface value, built once:
	// a script call passes them without boxing each again (script.fcall).
	boxed map[string]any
}

// newKeyspace builds a keyspace and its per-shard constant keys.
func newKeyspace(prefix string, shards int) keyspace {
	k := keyspace{prefix: prefix, shards: shards}
	tags := make([]string, shards)
	for s := range tags {
		tags[s] = k.tag(s)
	}
	k.tags = tags
	k.fixed = make([][]string, shards)
	for s := range k.fixed {
		keys := make([]string, 0, 12)
		for _, st := range allStatuses {
			keys = append(keys, k.status(s, st))
		}
		keys = append(keys, k.timers(s), k.cancelWait(s), k.corr(s), k.leases(s), k.leaseExp(s), k.tag(s))
		k.fixed[s] = keys
	}
	k.boxed = make(map[string]any, 12*shards)
	for _, keys := range k.fixed {
		for _, key := range keys {
			k.boxed[key] = key
		}
	}
	return k
}

// validatePrefix refuses prefixes that would break the hash tags or read
// badly in redis-cli.
func validatePrefix(p string) error {
	if p == "" {
		return fmt.Errorf("%w: the key prefix is empty", ErrInvalidData)
	}
	if len(p) > 128 {
		return fmt.Errorf("%w: the key prefix is %d bytes, at most 128", ErrInvalidData, len(p))
	}
	for _, r := range p {
		if r == '{' || r == '}' {
			return fmt.Errorf("%w: the key prefix %q contains a brace, which would break the hash tags", ErrInvalidData, p)
		}
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("%w: the key prefix %q contains a space or control character", ErrInvalidData, p)
		}
	}
	return nil
}

// shardOf is the flow's shard: its id's last 8 hex digits read as a
// number, modulo the shard count, so an operator computes it by hand
// (in bash: echo $(( 0x${ID: -8} % 16 ))). The last digits are random in
// every UUID version, including the time-ordered v7. The layout record
// names this placement (layoutHash): a flow space written with another
// one is refused.
func (k keyspace) shardOf(id uuid.UUID) int {
	return int(binary.BigEndian.Uint32(id[12:16]) % uint32(k.shards))
}

// Placements of flows in shards, as recorded in the layout's "hash" field.
const (
	// layoutHash is shardOf's: the id's last 32 bits modulo the shards.
	layoutHash = "id-tail32"
	// legacyHash was the placement before: FNV-1a of the 16 id bytes.
	legacyHash = "fnv32a"
)

// tag is "<prefix>:{<n>}", the part every key of shard n starts with.
func (k keyspace) tag(shard int) string {
	if shard >= 0 && shard < len(k.tags) {
		return k.tags[shard]
	}
	return k.prefix + ":{" + strconv.Itoa(shard) + "}"
}

func (k keyspace) flow(id uuid.UUID) string {
	return k.tag(k.shardOf(id)) + ":flow:" + id.String()
}

func (k keyspace) events(id uuid.UUID) string {
	return k.tag(k.shardOf(id)) + ":events:" + id.String()
}

func (k keyspace) steps(id uuid.UUID) string {
	return k.tag(k.shardOf(id)) + ":steps:" + id.String()
}

func (k keyspace) step(id uuid.UUID, runID string) string {
	return k.tag(k.shardOf(id)) + ":step:" + id.String() + ":" + runID
}

func (k keyspace) status(shard int, st FlowStatus) string {
	return k.tag(shard) + ":status:" + string(st)
}

func (k keyspace) owner(shard int, owner string) string {
	return k.tag(shard) + ":owner:" + owner
}

// controllerIndex holds every flow of a controller in a shard, by
// creation time (lua/include/attrs.lua ctl_key builds the same name).
func (k keyspace) controllerIndex(shard int, controller string) string {
	return k.tag(shard) + ":ctl:" + controller
}

// attr holds the flows of a shard whose search attribute name has value,
// by creation time (lua/include/attrs.lua attr_key): '=' never occurs in
// a name.
func (k keyspace) attr(shard int, name, value string) string {
	return k.tag(shard) + ":attr:" + name + "=" + value
}

func (k keyspace) timers(shard int) string   { return k.tag(shard) + ":timers" }
func (k keyspace) leases(shard int) string   { return k.tag(shard) + ":leases" }
func (k keyspace) leaseExp(shard int) string { return k.tag(shard) + ":leasexp" }
func (k keyspace) tickLock(shard int) string { return k.tag(shard) + ":ticklock" }

// ready is a controller's ready queue in a shard; the scripts build the
// same name from the shard base (KEYS[16]) and the flow's controller_id.
// It is also the name of the channel that announces new entries.
func (k keyspace) ready(shard int, controller string) string {
	return k.tag(shard) + ":ready:" + controller
}

// watch is the channel on which a shard's scripts publish every audit
// entry, as "<flow id> <entry>".
func (k keyspace) watch(shard int) string { return k.tag(shard) + ":watch" }

// watched marks a shard watched (lua/include/events.lua announce).
func (k keyspace) watched(shard int) string { return k.tag(shard) + ":watched" }

func (k keyspace) cancelWait(shard int) string { return k.tag(shard) + ":cancelwait" }
func (k keyspace) corr(shard int) string       { return k.tag(shard) + ":corr" }

// flowKeys returns the key set every flow script receives, in the order
// lua/include/context.lua documents. owner is added as key 16 when not empty.
func (k keyspace) flowKeys(id uuid.UUID, owner string) []string {
	keys, _ := k.flowKeysAndID(id)
	if owner != "" {
		keys = append(keys, k.owner(k.shardOf(id), owner))
	}
	return keys
}

// flowKeysAndID returns flowKeys(id, "") and id's text (id.String()).
// The flow's own three keys end with that text: the three and the text
// are cut from one string, one allocation for the four.
func (k keyspace) flowKeysAndID(id uuid.UUID) (keys []string, ids string) {
	var text [36]byte
	encodeID(text[:], id) // not id.String(): that would allocate it apart
	s := k.shardOf(id)
	tag := k.tag(s)
	own := tag + ":flow:" + string(text[:]) + tag + ":events:" + string(text[:]) + tag + ":steps:" + string(text[:])
	events := len(tag) + len(":flow:") + len(text)
	steps := events + len(tag) + len(":events:") + len(text)
	keys = make([]string, 0, 16)
	keys = append(keys, own[:events], own[events:steps], own[steps:])
	keys = append(keys, k.fixed[s]...)
	return keys, own[events-len(text) : events]
}

// encodeID writes id's text form, as id.String() returns it, to
// dst[:36].
func encodeID(dst []byte, id uuid.UUID) {
	hex.Encode(dst[0:8], id[0:4])
	dst[8] = '-'
	hex.Encode(dst[9:13], id[4:6])
	dst[13] = '-'
	hex.Encode(dst[14:18], id[6:8])
	dst[18] = '-'
	hex.Encode(dst[19:23], id[8:10])
	dst[23] = '-'
	hex.Encode(dst[24:36], id[10:16])
}

// headKeys is the key set of a script that picks its flow itself in shard
// (claim.lua takes its queue's head): flowKeys with 1..3 the prefixes of
// a flow's keys, to which the script appends the id it picked
// (lua/include/context.lua flow_keys_in).
func (k keyspace) headKeys(shard int) []string {
	tag := k.tag(shard)
	keys := make([]string, 0, 15)
	keys = append(keys, tag+":flow:", tag+":events:", tag+":steps:")
	return append(keys, k.fixed[shard]...)
}

// The keys of a parent's children (children.go), under the parent's
// hash tag, and each shard's relay of the work a flow that ended leaves
// for other shards (lua/include/children.lua, queues.lua relay_end):
//
//	<prefix>:{<n>}:kids:<id>    zset: child id by spawn order (1, 2, …)
//	<prefix>:{<n>}:kidres:<id>  hash: child id -> its outcome (JSON);
//	                            "#finished", "#failed", "#cancelled" counts
//	<prefix>:{<n>}:relay        zset: "d <child id>" (deliver its outcome),
//	                            "c <parent id>" (close its children), by
//	                            when an engine's tick drives it
//	<prefix>:{<n>}:joins        zset: parents waiting on their children,
//	                            by when they began
func (k keyspace) kids(id uuid.UUID) string {
	return k.tag(k.shardOf(id)) + ":kids:" + id.String()
}

func (k keyspace) kidResults(id uuid.UUID) string {
	return k.tag(k.shardOf(id)) + ":kidres:" + id.String()
}

func (k keyspace) relay(shard int) string { return k.tag(shard) + ":relay" }

// joins is a shard's parents waiting on their children, by when they
// began (lua/include/waits.lua): <prefix>:{<n>}:joins.
func (k keyspace) joins(shard int) string { return k.tag(shard) + ":joins" }

// layout is the flow space's description: its shard count, written by the
// first store that uses the prefix and checked by every other.
func (k keyspace) layout() string { return k.prefix + ":{meta}:layout" }

// lastTick is when an engine last ticked the flow space (unix ms, a
// string written by every tick): <prefix>:{meta}:lasttick (Explain).
func (k keyspace) lastTick() string { return k.prefix + ":{meta}:lasttick" }

// perShard returns keyOf for every shard.
func (k keyspace) perShard(keyOf func(shard int) string) []string {
	out := make([]string, k.shards)
	for i := range out {
		out[i] = keyOf(i)
	}
	return out
}

// corrPrefix is the start of every correlation member of (topic, corr):
// lengths make the pair unambiguous whatever bytes it holds.
func corrPrefix(topic, correlationID string) string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(len(topic)))
	b.WriteByte(':')
	b.WriteString(topic)
	b.WriteString(strconv.Itoa(len(correlationID)))
	b.WriteByte(':')
	b.WriteString(correlationID)
	b.WriteByte(':')
	return b.String()
}

// corrMember is the member of the correlation zset for one waiting flow.
func corrMember(topic, correlationID string, id uuid.UUID) string {
	return corrPrefix(topic, correlationID) + id.String()
}

// controllers is the per-shard set of controller ids that ever had a
// ready flow in the shard (make_ready in lua/include/queues.lua adds to it): it is
// how Stats finds the ready queues without a SCAN. It grows with the
// number of controllers, never with flows.
func (k keyspace) controllers(shard int) string { return k.tag(shard) + ":controllers" }

// The keys of early events (early.go). The key strings keep their
// first names (inbox, mbox, kept): they are the stored layout.
//
//	<prefix>:{<n>}:inbox:<flow id>  list: early events kept for one flow
//	<prefix>:{<r>}:mbox:<pair>      list: early events kept for (topic, correlation id)
//	<prefix>:{<n>}:kept             zset: early event id by deadline (counts)
//	<prefix>:{<r>}:claims           hash: claimed event id -> flow id, pair, entry
//	<prefix>:{<r>}:claimdue         zset: claimed event id by due time
//	<prefix>:{<n>}:used             zset: used events, by when they are forgotten: ids of
//	                                events by correlation (n = r), '<flow id> <event id>'
//	                                of events a flow of shard n used
//	<prefix>:{<r>}:take:<take id>   string: the event a take claimed (early_take.lua)
//
// <pair> is corrPrefix(topic, correlation id) and r its rendezvous shard.

// rendezvous is the shard of a (topic, correlation id) pair's early
// events.
func (k keyspace) rendezvous(cp string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(cp))
	return int(h.Sum32() % uint32(k.shards))
}

// earlyPair is the list of early events kept for the pair cp.
func (k keyspace) earlyPair(cp string) string { return k.tag(k.rendezvous(cp)) + ":mbox:" + cp }

// earlyFlow is the list of early events kept for flow id.
func (k keyspace) earlyFlow(id uuid.UUID) string {
	return k.tag(k.shardOf(id)) + ":inbox:" + id.String()
}

// earlyIndex indexes a shard's early events by deadline.
func (k keyspace) earlyIndex(shard int) string { return k.tag(shard) + ":kept" }

func (k keyspace) claims(shard int) string   { return k.tag(shard) + ":claims" }
func (k keyspace) claimDue(shard int) string { return k.tag(shard) + ":claimdue" }
func (k keyspace) used(shard int) string     { return k.tag(shard) + ":used" }
func (k keyspace) take(shard int, name string) string {
	return k.tag(shard) + ":take:" + name
}

// withEarlyFlow appends the flow's early-event list and its shard's
// index (keys 16 and 17 of transition_early.lua and deliver_event.lua)
// to a flow key set.
func (k keyspace) withEarlyFlow(keys []string, id uuid.UUID) []string {
	return append(keys, k.earlyFlow(id), k.earlyIndex(k.shardOf(id)))
}

// withEarly appends withEarlyFlow's keys and the shard's memory of used
// events (18 of transition_early.lua and deliver_event.lua) to a flow
// key set. Prune takes withEarlyFlow's only: the memory is the shard's.
func (k keyspace) withEarly(keys []string, id uuid.UUID) []string {
	return append(k.withEarlyFlow(keys, id), k.used(k.shardOf(id)))
}

// bridge is the resume bridge's stream: <prefix>:{bridge}:resume.
func (k keyspace) bridge() string { return k.prefix + ":{bridge}:resume" }

// bridgeRequests remembers the request ids PublishResume put on the
// stream (zset: id by when it is forgotten):
// <prefix>:{bridge}:requests.
func (k keyspace) bridgeRequests() string { return k.prefix + ":{bridge}:requests" }

// flowSpaceNamespace is the UUID namespace of a flow space's
// idempotency keys: a name-based UUID of its prefix, the same in every
// process that opens the flow space.
func flowSpaceNamespace(prefix string) uuid.UUID {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("taskflow:flow-space:"+prefix))
}

// The keys of schedules (schedules.go), all on one tag, {sched}, so every
// schedule script touches one slot.
func (k keyspace) schedTag() string                { return k.prefix + ":{sched}" }
func (k keyspace) schedule(name string) string     { return k.schedTag() + ":s:" + name }
func (k keyspace) schedDue() string                { return k.schedTag() + ":due" }
func (k keyspace) schedNames() string              { return k.schedTag() + ":names" }
func (k keyspace) schedHistory(name string) string { return k.schedTag() + ":hist:" + name }
func (k keyspace) schedStats() string              { return k.schedTag() + ":stats" }
func (k keyspace) schedTickLock() string           { return k.schedTag() + ":ticklock" }
func (k keyspace) schedGone(name string) string    { return k.schedTag() + ":gone:" + name }

// The keys of the gate (gate.go, lua/include/gate.lua), all on one tag,
// {gate}, so every gate script touches one slot: the lanes of flows with
// concurrency keys or a priority, the keys' limits, slots and buckets.
func (k keyspace) gateTag() string              { return k.prefix + ":{gate}" }
func (k keyspace) gateLimits() string           { return k.gateTag() + ":limits" }
func (k keyspace) gateQueued() string           { return k.gateTag() + ":fk" }
func (k keyspace) gateQueues() string           { return k.gateTag() + ":queues" }
func (k keyspace) gateAdmissions() string       { return k.gateTag() + ":adm" }
func (k keyspace) gateAdmitKeys() string        { return k.gateTag() + ":adk" }
func (k keyspace) gateFreed() string            { return k.gateTag() + ":freed" }
func (k keyspace) gateHeld(key string) string   { return k.gateTag() + ":held:" + key }
func (k keyspace) gateBucket(key string) string { return k.gateTag() + ":tb:" + key }
func (k keyspace) gateLevels(ctl string) string { return k.gateTag() + ":lv:" + ctl }
func (k keyspace) gateReady(ctl string) string  { return k.gateTag() + ":ready:" + ctl }
func (k keyspace) gateGroups(lvl int, ctl string) string {
	return k.gateTag() + ":gr:" + strconv.Itoa(lvl) + "|" + ctl
}
func (k keyspace) gateQueue(lvl int, group, ctl string) string {
	return k.gateTag() + ":q:" + strconv.Itoa(lvl) + "|" + group + "|" + ctl
}
