-- prune_flow.lua: delete one terminal flow last updated before a cutoff,
-- with its state, events, steps, early events and every index entry.
--
-- KEYS: the flow key set 1..15 (include/context.lua), 16 the owner
--   index, 17 the flow's early-event list, 18 the shard's early-event
--   index (include/early.lua), then the flow's step hashes (as many as
--   ARGV 3 says).
-- ARGV: 1 flow id  2 cutoff (unix ms; updated_at must be below it)
--   3 number of steps the caller saw (the steps zset must still hold
--   exactly that many, so no step key is left behind)
-- Returns: 1 when pruned, 0 when the flow is gone, not terminal, too
--   recent, gained steps meanwhile, or has relay work left (its outcome
--   not yet with its parent, its children not yet closed: the shard's
--   '<base>:relay'); nothing is deleted then. A parent goes with its
--   children's register and outcomes ('<base>:kids:<id>',
--   '<base>:kidres:<id>': include/children.lua); its children stay.
-- Indexes: every entry goes, the controller's and the attributes'
--   (include/attrs.lua) too.
-- Events: none; the flow's audit log is deleted with it. Its early
--   events go with it (a flow made again with the same id must not take
--   them); their list is capped, so the work is bounded.
--@include prelude
--@include context
--@include record
--@include queues
--@include waits
--@include attrs

local c = flow_context(KEYS, ARGV[1], nil)
local owner_index, cutoff = KEYS[16], tonumber(ARGV[2])
local f = load_flow(c)
if f == nil or not STATUS[f.status].terminal or tonumber(f.updated) >= cutoff then
  return 0
end
if redis.call('ZCARD', c.steps) ~= tonumber(ARGV[3]) then
  return 0
end
local relay = c.base .. ':relay'
if redis.call('ZSCORE', relay, 'd ' .. c.id) or redis.call('ZSCORE', relay, 'c ' .. c.id) then
  return 0
end
if f.owner ~= nil then
  redis.call('ZREM', owner_index, c.id)
end
unindex_flow(c, f.controller)
for _, st in pairs(STATUS) do
  redis.call('ZREM', KEYS[st.index], c.id)
end
clear_wait(c, f)
leave_running(c, f)
local list, index = KEYS[17], KEYS[18]
for _, entry in ipairs(redis.call('LRANGE', list, 0, -1)) do
  local id = string.match(entry, '^(%S+) ')
  if id then
    redis.call('ZREM', index, id)
  end
end
for i = 19, #KEYS do
  redis.call('DEL', KEYS[i])
end
redis.call('DEL', c.flow, c.events, c.steps, list, c.base .. ':kids:' .. c.id, c.base .. ':kidres:' .. c.id)
return 1
