-- reindex_flow.lua: rebuild one flow's index entries from its record
-- (the invariant checker's repair). Without a flow record, drop the id
-- from every index it may still be in.
--
-- KEYS: the flow key set 1..15 (include/context.lua), 16 an owner index to fix
--   (the flow's own, or the one holding a stale entry).
-- ARGV: 1 flow id  2 timer deadline ms for a waiting timer flow ('' none)
--   3 the correlation member the flow's wait implies ('' none)
--   4 how many stale indexes follow in KEYS (from 17)
--   5 the flow's revision ARGV 2..4 and 6.. were computed from ('' = no
--     record): a flow that changed since is left alone, since its wait
--     may be another one now
--   6.. stale correlation members naming this flow, to drop unless they
--       are the implied one.
-- KEYS 17..: stale indexes holding the flow's id, to drop it from: ready
--   queues of other controllers, controller and attribute indexes
--   (include/attrs.lua) that are not the flow's.
-- A runnable, unleased flow goes back on its ready queue, or, when it
-- carries concurrency keys or a priority (field 'gk'), gets the relay
-- entry 'g <id>' that queues it on its lane in the gate (gate.go).
-- Returns: 1 when the flow exists, 0 when it does not, -1 when it changed
--   since the caller read it (nothing written).
-- Events: none; the audit log is not touched.

--@include prelude
--@include context
--@include record
--@include queues
--@include attrs

local c = flow_context(KEYS, ARGV[1], nil) -- stamps nothing: scores are given
local owner_index = KEYS[16]
local f = load_flow(c)
if f ~= nil and f.rev ~= ARGV[5] then
  return -1
end
local STALE_READY = {}
for i = 17, 16 + tonumber(ARGV[4]) do
  STALE_READY[#STALE_READY + 1] = KEYS[i]
end
for i = 6, #ARGV do
  if ARGV[i] ~= ARGV[3] or f == nil then
    redis.call('ZREM', c.corr, ARGV[i])
  end
end
for i = 1, #STALE_READY do
  redis.call('ZREM', STALE_READY[i], c.id)
end
if f == nil then
  for _, st in pairs(STATUS) do
    redis.call('ZREM', KEYS[st.index], c.id)
  end
  redis.call('ZREM', owner_index, c.id)
  redis.call('ZREM', c.timers, c.id)
  redis.call('SREM', c.cancelwait, c.id)
  drop_lease(c, nil)
  return 0
end
-- A running flow is leased or ready, never both; any other is neither.
local lease = redis.call('HGET', c.leases, c.id)
if STATUS[f.status].runnable then
  local exp = lease and string.match(lease, '^[^|]*|(%d+)|')
  if exp then
    redis.call('ZADD', c.leasexp, exp, c.id)
    redis.call('ZREM', ready_key(c, f.controller), c.id)
  else
    drop_lease(c, nil)
    if (f.gk or '') ~= '' then
      -- It waits on its lane in the gate (gate.go), never here: its
      -- relay entry has an engine's tick queue it there (again, which is
      -- harmless).
      redis.call('ZREM', ready_key(c, f.controller), c.id)
      redis.call('ZADD', c.base .. ':relay', 'NX', f.updated, 'g ' .. c.id)
    else
      redis.call('ZADD', ready_key(c, f.controller), 'NX', f.updated, c.id)
    end
  end
else
  leave_running(c, f)
end
for name, st in pairs(STATUS) do
  if name ~= f.status then
    redis.call('ZREM', KEYS[st.index], c.id)
  elseif not redis.call('ZSCORE', KEYS[st.index], c.id) then
    redis.call('ZADD', KEYS[st.index], f.updated, c.id)
  end
end
if f.owner ~= nil and owner_index then
  redis.call('ZADD', owner_index, 'NX', f.created, c.id)
end
reindex_attrs(c, f)
local waiting = STATUS[f.status].waits
if waiting and ARGV[2] ~= '' then
  redis.call('ZADD', c.timers, ARGV[2], c.id)
else
  redis.call('ZREM', c.timers, c.id)
end
if waiting and f.cancel == '1' then
  redis.call('SADD', c.cancelwait, c.id)
else
  redis.call('SREM', c.cancelwait, c.id)
end
if f.corr ~= nil and f.corr ~= ARGV[3] then
  redis.call('ZREM', c.corr, f.corr)
  redis.call('HDEL', c.flow, 'corr')
end
if waiting and ARGV[3] ~= '' then
  redis.call('ZADD', c.corr, 0, ARGV[3])
  redis.call('HSET', c.flow, 'corr', ARGV[3])
end
return 1
