-- claim.lua: take a flow off its controller's ready queue and lease it to
-- a worker, if it is still there (another worker may have been faster).
--
-- KEYS: the flow key set 1..15 (see lib.lua).
-- ARGV: 1..8 the common head (7, the lease token, is the new lease's)
--   9 lease expiry (unix ms)  10 worker id (a JSON string)
--   11 controller id of the queue the caller read
-- Returns: {flow hash (record and state, or record only), ''}.
-- Errors: NOMATCH (gone from the queue, or no longer runnable: a stale
--   entry is dropped).
-- Events: claimed {worker} with the lease token; the revision does not
--   change (a lease is not part of the flow record).

if repeated() then
  return reply()
end
local f = load_flow()
if f == nil or f.status ~= 'running' or f.controller ~= ARGV[11] then
  redis.call('ZREM', KEYS[K_BASE] .. ':ready:' .. ARGV[11], ID)
  return err('NOMATCH')
end
if redis.call('ZREM', ready_key(f), ID) == 0 then
  return err('NOMATCH')
end
redis.call('HSET', KEYS[K_LEASES], ID, LEASE .. '|' .. ARGV[9] .. '|' .. ARGV[10])
redis.call('ZADD', KEYS[K_LEASEXP], ARGV[9], ID)
append_event(f, '"claimed"', '{"worker":' .. ARGV[10] .. '}')
return reply()
