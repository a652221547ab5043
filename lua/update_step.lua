-- update_step.lua: overwrite an existing step's mutable fields as given
-- (store level: the flow record and its audit log do not change).
--
-- KEYS: 1 flow hash  2 steps zset  3 the step hash.
-- ARGV: 1 step id (must be the stored one)  2 runtime  3 task  4 status
--   5 child session key ('' = none)  6 result JSON ('' = none)
--   7 updated_at ms.
-- Returns: the step hash (field/value pairs).
-- Errors: NOTFOUND (no such flow), NOSTEP (no step with that run id),
--   IMMUTABLE id (the step id differs from the stored one).
-- Events: none.
--@include errors

if redis.call('EXISTS', KEYS[1]) == 0 then
  return err(ERR.NOTFOUND)
end
local id = redis.call('HGET', KEYS[3], 'id')
if not id then
  return err(ERR.NOSTEP)
end
if id ~= ARGV[1] then
  return err(ERR.IMMUTABLE, 'id')
end
redis.call('HSET', KEYS[3], 'runtime', ARGV[2], 'task', ARGV[3], 'status', ARGV[4],
  'updated', ARGV[7])
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[3], 'child_session_key', ARGV[5])
else
  redis.call('HDEL', KEYS[3], 'child_session_key')
end
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[3], 'result_json', ARGV[6])
else
  redis.call('HDEL', KEYS[3], 'result_json')
end
return redis.call('HGETALL', KEYS[3])
