-- claim.lua: take a flow off its controller's ready queue and lease it to
-- a worker, if it is still there (another worker may have been faster).
--
-- KEYS: the flow key set 1..15 (include/context.lua).
-- ARGV: 1..9 the common head (include/context.lua; 7, the lease token,
--   is the new lease's)
--   10 lease expiry (unix ms)  11 worker id (a JSON string)
--   12 controller id of the queue the caller read
-- Returns: {flow hash (record and state, or record only), ''}.
-- Errors: NOMATCH (gone from the queue, or no longer runnable: a stale
--   entry is dropped).
--   COUNTLIMIT <rev> <seq> (the revision or event id could pass
--   MAX_COUNT, Go's MaxRevision: include/events.lua; nothing written).
-- Events: claimed {worker} with the lease token; the revision does not
--   change (a lease is not part of the flow record).
--@include prelude
--@include errors
--@include context
--@include record
--@include calls
--@include queues
--@include events

local c = mutation_context(KEYS, ARGV)
local f = load_flow(c)
if repeated(c, f) then
  return reply(c)
end
if f == nil or not STATUS[f.status].runnable or f.controller ~= ARGV[12] then
  redis.call('ZREM', ready_key(c, ARGV[12]), c.id)
  return err(ERR.NOMATCH)
end
local e = check_counts(f)
if e then
  return e
end
if redis.call('ZREM', ready_key(c, f.controller), c.id) == 0 then
  return err(ERR.NOMATCH)
end
redis.call('HSET', c.leases, c.id, c.lease .. '|' .. ARGV[10] .. '|' .. ARGV[11])
redis.call('ZADD', c.leasexp, ARGV[10], c.id)
append_event(c, f, '"claimed"', '{"worker":' .. ARGV[11] .. '}')
return reply(c)
