-- claim_take.lua: lease to a worker the flow the gate admitted
-- (gate_admit.lua), if it is still as the gate saw it: runnable, its
-- controller's, leased to nobody, with the same gate field. Otherwise it
-- writes nothing and says why, and Go gives the gate's slots back.
--
-- KEYS: the flow key set 1..15 of the flow (include/context.lua).
-- ARGV: 1..9 the common head (include/context.lua; 3, the call id, is
--   unused: 7, the new lease's token, names the call)
--   10 lease expiry (unix ms)  11 worker id (a JSON string)
--   12 controller id  13 the flow's gk field as the gate admitted it
-- Returns: {flow hash (record and state, or record only), flow id,
--   'full' or 'record', 0}, or {'', '', 'none', 0} when the flow is not
--   to be leased (gone, ended, leased, waiting, moved to another
--   controller, or its keys or priority changed). A call re-sent with the
--   same lease token returns the flow it leased the first time.
-- Errors: none of its own.
-- Events: claimed {worker} with the lease token; the revision does not
--   change (a lease is not part of the flow record).
--@include context
--@include record
--@include queues
--@include take

local c = mutation_context(KEYS, ARGV)
local t = remembered_take(c, c.lease)
if not t then
  local f = load_flow(c, {'status', 'controller', 'rev', 'seq', 'eb', 'gk'})
  if not f or not STATUS[f.status].runnable or f.controller ~= ARGV[12] or (f.gk or '') ~= ARGV[13]
    or redis.call('HEXISTS', c.leases, c.id) == 1 or check_counts(f) ~= nil then
    return {'', '', 'none', 0}
  end
  t = taken_context(c, c.id, c.lease)
  lease_taken(t, f, c.lease, ARGV[10], ARGV[11])
end
local r = reply(t)
return {r[1], t.id, r[3] or 'full', 0}
