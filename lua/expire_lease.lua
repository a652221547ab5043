-- expire_lease.lua: end a lease whose expiry passed (its worker died or
-- stalled) and put a runnable flow back on its ready queue. The engine's
-- tick calls it for due entries of the lease expiry set.
--
-- KEYS: the flow key set 1..15 (include/context.lua).
-- ARGV: 1..9 the common head (include/context.lua; 7 unused).
-- Returns: {flow hash (record and state, or record only), ''}.
-- Errors: NOMATCH (the lease is not due, or already gone), STALE (an
--   expiry entry without a flow or a lease: the entry is dropped).
--   COUNTLIMIT <rev> <seq> (the revision or event id could pass
--   MAX_COUNT, Go's MaxRevision: include/events.lua; nothing written).
-- Events: lease_expired {worker, lease}, naming the lease; the revision
--   does not change.
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
local exp = redis.call('ZSCORE', c.leasexp, c.id)
if not exp or tonumber(exp) > tonumber(c.now) then
  return err(ERR.NOMATCH)
end
local e = f and check_counts(f)
if e then
  return e
end
local cur = redis.call('HGET', c.leases, c.id)
drop_lease(c, cur and string.match(cur, '^[^|]*'))
if f == nil or not cur then
  return err(ERR.STALE) -- an expiry entry of no flow or no lease: dropped
end
if STATUS[f.status].runnable then
  make_ready(c, f)
end
local token, worker = string.match(cur, '^([^|]*)|%d+|(.*)$')
c.lease = token -- the event names the lease that ended
append_event(c, f, '"lease_expired"', '{"worker":' .. worker .. ',"lease":"' .. token .. '"}')
return reply(c)
