-- claim.lua: lease the oldest flow of a controller's ready queue in one
-- shard to a worker (include/take.lua), or say the queue is empty.
--
-- KEYS: the shard's key set 1..15 (include/context.lua: 1..3 are the
--   prefixes of a flow's keys; the flow taken is reached by its id).
-- ARGV: 1..9 the common head (include/context.lua; 1, the flow id, is
--   '' and unused; 3, the call id, is unused: 7, the new lease's token,
--   names the call)
--   10 lease expiry (unix ms)  11 worker id (a JSON string)
--   12 controller id
-- Returns: {flow hash (record and state, or record only), flow id,
--   'full' or 'record', ready flows left on the queue}, or, when the
--   queue had none, {'', '', 'none', 0}. A call re-sent with the same
--   lease token returns the flow it leased the first time.
-- Errors: none of its own (a stale entry is dropped; include/take.lua).
-- Events: claimed {worker} with the lease token; the revision does not
--   change (a lease is not part of the flow record).
--@include context
--@include record
--@include queues
--@include take

local c = mutation_context(KEYS, ARGV)
local t = remembered_take(c, c.lease)
if not t then
  t = take_head(c, ARGV[12], c.lease, ARGV[10], ARGV[11])
end
local left = redis.call('ZCARD', ready_key(c, ARGV[12]))
if not t then
  return {'', '', 'none', left}
end
local r = reply(t)
return {r[1], t.id, r[3] or 'full', left}
