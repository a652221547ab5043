-- delete_orphans.lua: delete keys left behind by a flow that no longer
-- exists (the invariant checker's repair), unless the flow came back.
-- The flow's early events go too, with their entries in
-- the shard's early-event index (include/early.lua).
--
-- KEYS: 1 the flow hash, 2 the flow's early-event list, 3 the shard's early-event
--   index, 4.. the other orphaned keys of that flow.
-- ARGV: none.
-- Returns: the number of keys deleted (0 when the flow exists).

if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
for _, entry in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  local id = string.match(entry, '^(%S+) ')
  if id then
    redis.call('ZREM', KEYS[3], id)
  end
end
local n = 0
for i = 2, #KEYS do
  if i ~= 3 then
    n = n + redis.call('DEL', KEYS[i])
  end
end
return n
