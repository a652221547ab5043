-- reindex_flow.lua: rebuild one flow's index entries from its record
-- (the invariant checker's repair). Without a flow record, drop the id
-- from every index it may still be in.
--
-- KEYS: the flow key set 1..15 (see lib.lua), 16 an owner index to fix
--   (the flow's own, or the one holding a stale entry).
-- ARGV: 1 flow id  2 timer deadline ms for a waiting timer flow ('' none)
--   3 the correlation member the flow's wait implies ('' none)
--   4 how many stale ready queues follow in KEYS (from 17)
--   5 the flow's revision ARGV 2..4 and 6.. were computed from ('' = no
--     record): a flow that changed since is left alone, since its wait
--     may be another one now
--   6.. stale correlation members naming this flow, to drop unless they
--       are the implied one.
-- KEYS 17..: ready queues of other controllers holding the flow's id.
-- Returns: 1 when the flow exists, 0 when it does not, -1 when it changed
--   since the caller read it (nothing written).
-- Events: none; the audit log is not touched.

local f = load_flow()
if f ~= nil and f.rev ~= ARGV[5] then
  return -1
end
local STALE_READY = {}
for i = 17, 16 + tonumber(ARGV[4]) do
  STALE_READY[#STALE_READY + 1] = KEYS[i]
end
for i = 6, #ARGV do
  if ARGV[i] ~= ARGV[3] or f == nil then
    redis.call('ZREM', KEYS[K_CORR], ARGV[i])
  end
end
for i = 1, #STALE_READY do
  redis.call('ZREM', STALE_READY[i], ID)
end
if f == nil then
  for _, i in pairs(STATUS_KEY) do
    redis.call('ZREM', KEYS[i], ID)
  end
  redis.call('ZREM', KEYS[K_OWNER], ID)
  redis.call('ZREM', KEYS[K_TIMERS], ID)
  redis.call('SREM', KEYS[K_CANCELWAIT], ID)
  redis.call('HDEL', KEYS[K_LEASES], ID)
  redis.call('ZREM', KEYS[K_LEASEXP], ID)
  return 0
end
-- A running flow is leased or ready, never both; any other is neither.
local lease = redis.call('HGET', KEYS[K_LEASES], ID)
if f.status == 'running' then
  local exp = lease and string.match(lease, '^[^|]*|(%d+)|')
  if exp then
    redis.call('ZADD', KEYS[K_LEASEXP], exp, ID)
    redis.call('ZREM', ready_key(f), ID)
  else
    redis.call('HDEL', KEYS[K_LEASES], ID)
    redis.call('ZREM', KEYS[K_LEASEXP], ID)
    redis.call('ZADD', ready_key(f), 'NX', f.updated, ID)
  end
else
  leave_running(f)
end
for st, i in pairs(STATUS_KEY) do
  if st ~= f.status then
    redis.call('ZREM', KEYS[i], ID)
  elseif not redis.call('ZSCORE', KEYS[i], ID) then
    redis.call('ZADD', KEYS[i], f.updated, ID)
  end
end
if f.owner ~= nil and KEYS[K_OWNER] then
  redis.call('ZADD', KEYS[K_OWNER], 'NX', f.created, ID)
end
local waiting = f.status == 'waiting'
if waiting and ARGV[2] ~= '' then
  redis.call('ZADD', KEYS[K_TIMERS], ARGV[2], ID)
else
  redis.call('ZREM', KEYS[K_TIMERS], ID)
end
if waiting and f.cancel == '1' then
  redis.call('SADD', KEYS[K_CANCELWAIT], ID)
else
  redis.call('SREM', KEYS[K_CANCELWAIT], ID)
end
if f.corr ~= nil and f.corr ~= ARGV[3] then
  redis.call('ZREM', KEYS[K_CORR], f.corr)
  redis.call('HDEL', KEYS[K_FLOW], 'corr')
end
if waiting and ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[K_CORR], 0, ARGV[3])
  redis.call('HSET', KEYS[K_FLOW], 'corr', ARGV[3])
end
return 1
