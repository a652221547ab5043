-- record_step.lua: upsert the step (flow, run id) from an observation and
-- append a step_observed event. The flow's revision does not change: a
-- step is not part of the flow record; the event carries the revision.
--
-- KEYS: 1 flow hash  2 events list  3 steps zset  4 step hash.
-- ARGV: 1..6 the common head (4 and 6 unused)
--   7 run id  8 step id for a new step  9 task  10 status
--   11 child session key ('' keeps the recorded one)
--   12 result JSON ('' = none)  13 runtime for a new step
--   14 payload of the step_observed event (JSON)
-- Returns: the step hash (field/value pairs).
-- Errors: NOTFOUND (no such flow).
-- Events: step_observed.

local f = load_flow()
if f == nil then
  return err('NOTFOUND')
end
local step = KEYS[4]
if redis.call('EXISTS', step) == 0 then
  redis.call('HSET', step, 'id', ARGV[8], 'flow_id', ID, 'runtime', ARGV[13],
    'run_id', ARGV[7], 'created_at', NOW_MS)
  redis.call('ZADD', KEYS[3], redis.call('ZCARD', KEYS[3]) + 1, ARGV[7])
end
redis.call('HSET', step, 'task', ARGV[9], 'status', ARGV[10], 'updated_at', NOW_MS)
if ARGV[11] ~= '' then
  redis.call('HSET', step, 'child_session_key', ARGV[11])
end
if ARGV[12] ~= '' then
  redis.call('HSET', step, 'result_json', ARGV[12])
else
  redis.call('HDEL', step, 'result_json')
end
local seq = redis.call('HINCRBY', KEYS[1], 'event_seq', 1)
redis.call('LPUSH', KEYS[2], '{"id":' .. seq .. ',"kind":"step_observed","rev":' ..
  f.revision .. ',"at":' .. NOW_MS .. ',"payload":' .. ARGV[14] .. '}')
if EVENT_CAP > 0 then
  redis.call('LTRIM', KEYS[2], 0, EVENT_CAP - 1)
end
return redis.call('HGETALL', step)
