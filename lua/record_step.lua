-- record_step.lua: upsert the step (flow, run id) from an observation and
-- append a step_observed event. The flow's revision does not change: a
-- step is not part of the flow record; the event carries the revision.
--
-- KEYS: the flow key set 1..16 (see lib.lua), 17 the step hash.
-- ARGV: 1..7 the common head (4, 6 and 7 unused)
--   8 run id  9 step id for a new step  10 task  11 status
--   12 child session key ('' keeps the recorded one)
--   13 result JSON ('' = none)  14 runtime for a new step
--   15 payload of the step_observed event (JSON)
-- Returns: the step hash (field/value pairs).
-- Errors: NOTFOUND (no such flow).
-- Events: step_observed.

local f = load_flow()
if f == nil then
  return err('NOTFOUND')
end
local step = KEYS[17]
if redis.call('EXISTS', step) == 0 then
  redis.call('HSET', step, 'id', ARGV[9], 'flow_id', ID, 'runtime', ARGV[14],
    'run_id', ARGV[8], 'created_at', NOW_MS)
  redis.call('ZADD', KEYS[K_STEPS], redis.call('ZCARD', KEYS[K_STEPS]) + 1, ARGV[8])
end
redis.call('HSET', step, 'task', ARGV[10], 'status', ARGV[11], 'updated_at', NOW_MS)
if ARGV[12] ~= '' then
  redis.call('HSET', step, 'child_session_key', ARGV[12])
end
if ARGV[13] ~= '' then
  redis.call('HSET', step, 'result_json', ARGV[13])
else
  redis.call('HDEL', step, 'result_json')
end
append_event(f, '"step_observed"', ARGV[15])
return redis.call('HGETALL', step)
