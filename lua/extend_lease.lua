-- extend_lease.lua: push a live lease's expiry out.
--
-- KEYS: the flow key set 1..15 (include/context.lua).
-- ARGV: 1..9 the common head (include/context.lua; 7, the lease token,
--   is required)
--   10 new expiry (unix ms)
-- Returns: 1.
-- Errors: NOTFOUND, LEASELOST (expired, released, or another worker's).
-- Events: none.
--@include context
--@include calls
--@include guards

local c = mutation_context(KEYS, ARGV)
local f, e, seen = load_checked(c)
if seen then
  return 1
end
if e then
  return e
end
remember(c, f)
local worker = string.match(redis.call('HGET', c.leases, c.id), '^[^|]*|%d+|(.*)$')
redis.call('HSET', c.leases, c.id, c.lease .. '|' .. ARGV[10] .. '|' .. worker)
redis.call('ZADD', c.leasexp, ARGV[10], c.id)
return 1
