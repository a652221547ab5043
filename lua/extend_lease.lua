-- extend_lease.lua: push a live lease's expiry out.
--
-- KEYS: the flow key set 1..15 (see lib.lua).
-- ARGV: 1..8 the common head (7, the lease token, is required)
--   9 new expiry (unix ms)
-- Returns: 1.
-- Errors: NOTFOUND, LEASELOST (expired, released, or another worker's).
-- Events: none.

if repeated() then
  return 1
end
local f, e = load_leased()
if e then
  return e
end
remember(f)
local worker = string.match(redis.call('HGET', KEYS[K_LEASES], ID), '^[^|]*|%d+|(.*)$')
redis.call('HSET', KEYS[K_LEASES], ID, LEASE .. '|' .. ARGV[9] .. '|' .. worker)
redis.call('ZADD', KEYS[K_LEASEXP], ARGV[9], ID)
return 1
