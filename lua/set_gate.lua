-- set_gate.lua: set a flow's concurrency keys and priority (its gate
-- field 'gk', gate.go). A ready flow (runnable, leased to nobody) is
-- queued again where it now belongs: the gate's lane (a relay entry 'g
-- <id>', include/queues.lua make_ready) or its shard's ready queue; an
-- entry it leaves in its old lane is dropped by the admission that meets
-- it. A leased flow keeps its lease and the slots it holds: the change
-- counts from its next claim.
--
-- KEYS: the flow key set 1..15 (include/context.lua).
-- ARGV: 1..9 the common head (include/context.lua)
--   10 the new gk field ('' = no keys, priority 0)
--   11 the event's payload (JSON: {"keys":[…],"priority":n})
-- Returns: {flow hash (record and state, or record only), ''}. A call
--   that changes nothing writes nothing: no revision, no event.
-- Errors: NOTFOUND, REVISION <exp> <act>, LEASELOST, TERMINAL <status>,
--   COUNTLIMIT <rev> <seq> (include/events.lua; nothing written).
-- Events: concurrency_set {"keys":[…],"priority":n}.
--@include prelude
--@include errors
--@include context
--@include record
--@include guards
--@include queues
--@include events

local FIELDS = {
  'status', 'cancel', 'rev', 'seq', 'size', 'raw', 'eb', 'calls', 'xcalls', 'controller', 'gk', gkr = true,
}

local c = mutation_context(KEYS, ARGV)
local f, e, seen = load_checked(c, FIELDS)
if seen or e then
  return e or reply(c)
end
if STATUS[f.status].terminal then
  return err(ERR.TERMINAL, f.status)
end
if (f.gk or '') == ARGV[10] then
  return reply(c)
end
local ready = STATUS[f.status].runnable and redis.call('HEXISTS', c.leases, c.id) == 0
if ready and (f.gk or '') == '' then
  redis.call('ZREM', ready_key(c, f.controller), c.id)
end
if ARGV[10] == '' then
  redis.call('HDEL', c.flow, 'gk')
  f.gk = nil
else
  f.gk = ARGV[10]
end
if ready then
  make_ready(c, f)
end
local fields = {}
if f.gk then
  fields = {'gk', f.gk}
end
commit(c, f, '"concurrency_set"', ARGV[11], fields)
return reply(c)
