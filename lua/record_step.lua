-- record_step.lua: upsert the step (flow, run id) from an observation and
-- append a step_observed event. The flow's revision does not change: a
-- step is not part of the flow record; the event carries the revision.
--
-- KEYS: the flow key set 1..15 (see lib.lua), 16 the step hash.
-- ARGV: 1..8 the common head (4, 6 and 8 unused; 7, a lease token, fences)
--   9 run id  10 step id for a new step  11 task  12 status
--   13 child session key ('' keeps the recorded one)
--   14 result JSON ('' = none)  15 runtime for a new step
--   16 payload of the step_observed event (JSON), naming runtime ARGV[15]
--      as '"runtime":<ARGV[15] as JSON>': a step recorded earlier with
--      another runtime has it replaced by its own
--   17 the most steps a flow holds (a new run id beyond it is refused)
-- Returns: the step hash (field/value pairs).
-- Errors: NOTFOUND (no such flow), LEASELOST, TERMINAL <status>,
--   CANCELPENDING <status> (a finished or cancel-requested flow takes no
--   more steps), TOOMANYSTEPS <cap> (a new run id over the cap).
-- Events: step_observed.

if repeated() then
  return redis.call('HGETALL', KEYS[16])
end
local f, e = load_leased()
if e then
  return e
end
e = check_mutable(f)
if e then
  return e
end
local step = KEYS[16]
if redis.call('EXISTS', step) == 0 then
  if redis.call('ZCARD', KEYS[K_STEPS]) >= tonumber(ARGV[17]) then
    return err('TOOMANYSTEPS', ARGV[17])
  end
  redis.call('HSET', step, 'id', ARGV[10], 'flow_id', ID, 'runtime', ARGV[15],
    'run_id', ARGV[9], 'created', NOW_MS)
  redis.call('ZADD', KEYS[K_STEPS], redis.call('ZCARD', KEYS[K_STEPS]) + 1, ARGV[9])
end
redis.call('HSET', step, 'task', ARGV[11], 'status', ARGV[12], 'updated', NOW_MS)
if ARGV[13] ~= '' then
  redis.call('HSET', step, 'child_session_key', ARGV[13])
end
if ARGV[14] ~= '' then
  redis.call('HSET', step, 'result_json', ARGV[14])
else
  redis.call('HDEL', step, 'result_json')
end
local payload = ARGV[16]
local runtime = redis.call('HGET', step, 'runtime') or ''
if runtime ~= ARGV[15] then
  local from = '"runtime":"' .. ARGV[15] .. '"'
  local i, j = string.find(payload, from, 1, true)
  if i then
    payload = string.sub(payload, 1, i - 1) .. '"runtime":' .. cjson.encode(runtime) .. string.sub(payload, j + 1)
  end
end
append_event(f, '"step_observed"', payload)
return redis.call('HGETALL', step)
