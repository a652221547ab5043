-- gate_limit.lua: set or delete a concurrency key's limit (gate.go
-- SetKeyLimit, DeleteKeyLimit), and wake the claims waiting for a slot: the
-- new limit may admit them.
--
-- KEYS: 1 the limits hash (on the {gate} tag)
-- ARGV: 1 key  2 the limit ('<concurrency> <rate> <per ms> <burst>
--   <weight>', Go checked it; '' = delete)  3 the most keys with a limit
--   4 the gate's freed channel
-- Returns: 1, or -1 when a new key would pass the most (nothing written).
-- Errors: none.
-- Events: none.
--@include prelude

if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
    return -1
  end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call(PUBLISH, ARGV[4], ARGV[1])
return 1
