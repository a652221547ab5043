-- gate_extend.lua: move an admission's slots to its lease's new expiry,
-- before the lease itself is extended (claim.go Extend): a slot never
-- lapses while its lease lives.
--
-- KEYS: 1 the gate's base '<prefix>:{gate}' (not a key: it names the
--   keys of include/gate.lua, all on that tag)
-- ARGV: 1 flow id  2 lease token  3 new expiry (unix ms)
-- Returns: 1 when the admission holds slots, 0 when it holds none.
-- Errors: none.
-- Events: none.
--@include gate

local base = KEYS[1]
local member = ARGV[1] .. '|' .. ARGV[2]
local keys = redis.call('HGET', base .. ':adk', member)
if not keys then
  return 0
end
redis.call('ZADD', base .. ':adm', 'XX', ARGV[3], member)
for _, k in ipairs(gate.split(keys)) do
  redis.call('ZADD', base .. ':held:' .. k, 'XX', ARGV[3], member)
end
return 1
