-- record_step.lua: upsert the step (flow, run id) from an observation and
-- append a step_observed event. The flow's revision does not change: a
-- step is not part of the flow record; the event carries the revision.
--
-- KEYS: the flow key set 1..15 (include/context.lua), 16 the step hash.
-- ARGV: 1..9 the common head (include/context.lua; 4, 6 and 8 unused;
--   7, a lease token, fences)
--   10 run id  11 step id for a new step  12 task  13 status
--   14 child session key ('' keeps the recorded one)
--   15 result JSON ('' = none)  16 runtime for a new step
--   17 payload of the step_observed event (JSON), naming runtime ARGV[16]
--      as '"runtime":<ARGV[16] as JSON>': a step recorded earlier with
--      another runtime has it replaced by its own
--   18 the most steps a flow holds (a new run id beyond it is refused)
-- Returns: the step hash (field/value pairs).
-- Errors: NOTFOUND (no such flow), LEASELOST, TERMINAL <status>,
--   CANCELPENDING <status> (a finished or cancel-requested flow takes no
--   more steps), TOOMANYSTEPS <cap> (a new run id over the cap).
--   COUNTLIMIT <rev> <seq> (the revision or event id could pass
--   MAX_COUNT, Go's MaxRevision: include/events.lua; nothing written).
-- Events: step_observed.
--@include prelude
--@include errors
--@include context
--@include guards
--@include events

local c = mutation_context(KEYS, ARGV)
local step = KEYS[16]
local f, e, seen = load_checked(c)
if seen then
  return redis.call('HGETALL', step)
end
e = e or check_mutable(f)
if e then
  return e
end
if redis.call('EXISTS', step) == 0 then
  if redis.call('ZCARD', c.steps) >= tonumber(ARGV[18]) then
    return err(ERR.TOOMANYSTEPS, ARGV[18])
  end
  redis.call('HSET', step, 'id', ARGV[11], 'flow_id', c.id, 'runtime', ARGV[16],
    'run_id', ARGV[10], 'created', c.now)
  redis.call('ZADD', c.steps, redis.call('ZCARD', c.steps) + 1, ARGV[10])
end
redis.call('HSET', step, 'task', ARGV[12], 'status', ARGV[13], 'updated', c.now)
if ARGV[14] ~= '' then
  redis.call('HSET', step, 'child_session_key', ARGV[14])
end
if ARGV[15] ~= '' then
  redis.call('HSET', step, 'result_json', ARGV[15])
else
  redis.call('HDEL', step, 'result_json')
end
local payload = ARGV[17]
local runtime = redis.call('HGET', step, 'runtime') or ''
if runtime ~= ARGV[16] then
  local from = '"runtime":"' .. ARGV[16] .. '"'
  local i, j = string.find(payload, from, 1, true)
  if i then
    payload = string.sub(payload, 1, i - 1) .. '"runtime":' .. cjson.encode(runtime) .. string.sub(payload, j + 1)
  end
end
append_event(c, f, '"step_observed"', payload)
return redis.call('HGETALL', step)
