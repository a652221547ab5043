-- insert_step.lua: insert a new step; (flow, run id) must be new.
--
-- KEYS: 1 flow hash  2 steps zset  3 step hash.
-- ARGV: 1 step id  2 flow id  3 runtime  4 run id  5 task  6 status
--   7 child session key ('' = none)  8 result JSON ('' = none)
--   9 created_at ms  10 updated_at ms  11 the most steps a flow holds
-- Returns: 1.
-- Errors: NOTFOUND (no such flow), DUPSTEP (the run id is taken by
--   another step; the same step id again is a re-sent call: 1),
--   TOOMANYSTEPS <cap> (the flow holds the most steps it may).
-- Events: none (store level).
--@include errors

if redis.call('EXISTS', KEYS[1]) == 0 then
  return err(ERR.NOTFOUND)
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  -- The same step again (a re-sent call: same step id) is not a duplicate.
  if redis.call('HGET', KEYS[3], 'id') == ARGV[1] then
    return 1
  end
  return err(ERR.DUPSTEP)
end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[11]) then
  return err(ERR.TOOMANYSTEPS, ARGV[11])
end
redis.call('HSET', KEYS[3], 'id', ARGV[1], 'flow_id', ARGV[2], 'runtime', ARGV[3],
  'run_id', ARGV[4], 'task', ARGV[5], 'status', ARGV[6],
  'created', ARGV[9], 'updated', ARGV[10])
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[3], 'child_session_key', ARGV[7])
end
if ARGV[8] ~= '' then
  redis.call('HSET', KEYS[3], 'result_json', ARGV[8])
end
redis.call('ZADD', KEYS[2], redis.call('ZCARD', KEYS[2]) + 1, ARGV[4])
return 1
