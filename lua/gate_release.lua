-- gate_release.lua: give back the slots an admission holds (its lease
-- ended, moved, or its take was refused), and, for a flow that ended,
-- forget its lane entry. A key that was full (slots that lapsed with
-- their leases counted) and has room now announces on the gate's freed
-- channel, which wakes the claims that wait for one.
--
-- KEYS: 1 the gate's base '<prefix>:{gate}' (not a key: it names the
--   keys of include/gate.lua, all on that tag)
-- ARGV: 1 flow id  2 lease token ('' = no admission: only the lane
--   entry of a flow that ended goes)  3 '1' when the flow ended (its lane
--   entry goes too), else '0'  4 now (unix ms)  5 '1' when the
--   admission's take was refused (its flow was not to be leased): the
--   rate tokens it took go back to their buckets, else '0'
-- Returns: 1 when the admission held slots, 0 when it held none (given
--   back already, or never made).
-- Errors: none.
-- Events: none.
--@include prelude
--@include gate

local base, id = KEYS[1], ARGV[1]
local member = id .. '|' .. ARGV[2]
local now = tonumber(ARGV[4])
if ARGV[3] == '1' then
  redis.call('HDEL', base .. ':fk', id)
end
local keys = redis.call('HGET', base .. ':adk', member)
redis.call('ZREM', base .. ':adm', member)
if not keys then
  return 0
end
redis.call('HDEL', base .. ':adk', member)
local freed = false
for _, k in ipairs(gate.split(keys)) do
  local c = gate.limit(base, k)
  local held = base .. ':held:' .. k
  -- Full before (counting slots that lapsed unannounced, a dead
  -- worker's), room after.
  local before = redis.call('ZCARD', held)
  redis.call('ZREM', held, member)
  if c > 0 and before >= c and gate.in_flight(base, k, now) < c then
    freed = true
  end
  if ARGV[5] == '1' then
    local _, r, per, burst = gate.limit(base, k)
    if r > 0 then
      local t = gate.tokens(base, k, now, r, per, burst)
      redis.call('HSET', base .. ':tb:' .. k, 't', tostring(math.min(burst, t + 1)), 'at', tostring(now))
    end
  end
end
if freed then
  redis.call(PUBLISH, base .. ':freed', id)
end
return 1
