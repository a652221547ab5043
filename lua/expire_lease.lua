-- expire_lease.lua: end a lease whose expiry passed (its worker died or
-- stalled) and put a running flow back on its ready queue. The engine's
-- tick calls it for due entries of the lease expiry set.
--
-- KEYS: the flow key set 1..15 (see lib.lua).
-- ARGV: 1..8 the common head (7 unused).
-- Returns: {flow hash (record and state, or record only), ''}.
-- Errors: NOMATCH (the lease is not due, or already gone), STALE (an
--   expiry entry without a flow or a lease: the entry is dropped).
-- Events: lease_expired {worker, lease}, naming the lease; the revision
--   does not change.

if repeated() then
  return reply()
end
local exp = redis.call('ZSCORE', KEYS[K_LEASEXP], ID)
if not exp or tonumber(exp) > tonumber(NOW_MS) then
  return err('NOMATCH')
end
local cur = redis.call('HGET', KEYS[K_LEASES], ID)
redis.call('HDEL', KEYS[K_LEASES], ID)
redis.call('ZREM', KEYS[K_LEASEXP], ID)
local f = load_flow()
if f == nil or not cur then
  return err('STALE') -- an expiry entry of no flow or no lease: dropped
end
if f.status == 'running' then
  make_ready(f)
end
local token, worker = string.match(cur, '^([^|]*)|%d+|(.*)$')
LEASE = token -- the event names the lease that ended
append_event(f, '"lease_expired"', '{"worker":' .. worker .. ',"lease":"' .. token .. '"}')
return reply()
