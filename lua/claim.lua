-- claim.lua: take a flow off its controller's ready queue and lease it to
-- a worker, if it is still there (another worker may have been faster).
--
-- KEYS: the flow key set 1..16 (see lib.lua).
-- ARGV: 1..7 the common head (7, the lease token, is the new lease's)
--   8 lease expiry (unix ms)  9 worker id (a JSON string)
--   10 controller id of the queue the caller read
-- Returns: {flow hash, state hash, ''}.
-- Errors: NOMATCH (gone from the queue, or no longer runnable: a stale
--   entry is dropped).
-- Events: claimed {worker} with the lease token; the revision does not
--   change (a lease is not part of the flow record).

local f = load_flow()
if f == nil or f.status ~= 'running' or f.controller_id ~= ARGV[10] then
  redis.call('ZREM', KEYS[K_BASE] .. ':ready:' .. ARGV[10], ID)
  return err('NOMATCH')
end
if redis.call('ZREM', ready_key(f), ID) == 0 then
  return err('NOMATCH')
end
redis.call('HSET', KEYS[K_LEASES], ID, LEASE .. '|' .. ARGV[8] .. '|' .. ARGV[9])
redis.call('ZADD', KEYS[K_LEASEXP], ARGV[8], ID)
append_event(f, '"claimed"', '{"worker":' .. ARGV[9] .. '}')
return reply()
