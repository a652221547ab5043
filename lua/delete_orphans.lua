-- delete_orphans.lua: delete keys left behind by a flow that no longer
-- exists (the invariant checker's repair), unless the flow came back.
--
-- KEYS: 1 the flow hash, 2.. the orphaned keys of that flow.
-- ARGV: none.
-- Returns: the number of keys deleted (0 when the flow exists).

if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local n = 0
for i = 2, #KEYS do
  n = n + redis.call('DEL', KEYS[i])
end
return n
