-- release_lease.lua: give a leased flow back; a running flow goes back on
-- its ready queue for another worker.
--
-- KEYS: the flow key set 1..15 (see lib.lua).
-- ARGV: 1..8 the common head (7, the lease token, is required).
-- Returns: 1.
-- Errors: NOTFOUND, LEASELOST (expired, or another worker's).
-- Events: released, with the lease token; the revision does not change.

if repeated() then
  return 1
end
local f, e = load_leased()
if e then
  return e
end
redis.call('HDEL', KEYS[K_LEASES], ID)
redis.call('ZREM', KEYS[K_LEASEXP], ID)
if f.status == 'running' then
  make_ready(f)
end
append_event(f, '"released"', '{}')
return 1
