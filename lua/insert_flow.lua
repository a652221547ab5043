-- insert_flow.lua: insert a whole flow as another store kept it (an
-- importer's call): its id, status, revision, timestamps, wait, state and
-- cancel flag as given, with its steps and its audit log, and every index
-- entry its record implies; all or nothing.
--
-- KEYS: the flow key set 1..16 (see lib.lua), owner index included;
--   17.. the step hashes, in the order of the steps in ARGV.
-- ARGV: 1..8 the common head; 2 and 3, "now", are the flow's updated_at
--   (the time the status and ready indexes record); 4, 5, 7 are ignored
--   (A below is the head's length: the own arguments follow it)
--   A+1 status  A+2 controller_id  A+3 goal  A+4 owner_session_key
--   A+5 requester_origin  A+6 current_step  A+7 cancel ('1' or '')
--   A+8 revision  A+9 created_at (unix ms)
--   A+10 wait JSON ('' = none; only for waiting)
--   A+11 timer deadline ms ('' = not a timer)
--   A+12 correlation member ('' = not an external event)
--   A+13 step count S  A+14 event count E  A+15 id of the newest event
--   then S steps of 9: id, runtime, run id, task, status, child session
--     key (''), result JSON (''), created ms, updated ms
--   then E events of 3, oldest first: kind (a JSON string), at (unix ms),
--     payload (JSON); every entry carries the flow's revision
--   then the state (see apply_state: 'object' or 'replace').
-- Returns: {flow hash (record and state, or record only), ''}.
-- Errors: EXISTS (a flow with that id is stored), TOOLARGE <size>.
-- Events: none announced; the given entries become the audit log (leftover
--   events and step sets of a flow that does not exist are replaced).

local A = 8
if redis.call('EXISTS', KEYS[K_FLOW]) == 1 then
  return err('EXISTS')
end
local nsteps, nevents = tonumber(ARGV[A + 13]), tonumber(ARGV[A + 14])
local first_step = A + 16
local first_event = first_step + 9 * nsteps
local state_at = first_event + 3 * nevents
local f = {status = nil, rev = ARGV[A + 8], controller = ARGV[A + 2]}
local e = apply_state(f, state_at)
if e then
  return e
end
set_fields('controller', ARGV[A + 2], 'goal', ARGV[A + 3], 'owner', ARGV[A + 4],
  'origin', ARGV[A + 5], 'step', ARGV[A + 6], 'cancel', ARGV[A + 7],
  'rev', ARGV[A + 8], 'created', ARGV[A + 9], 'updated', NOW_MS,
  'seq', ARGV[A + 15])
f.cancel = ARGV[A + 7]
set_status(f, ARGV[A + 1])
redis.call('ZADD', KEYS[K_OWNER], ARGV[A + 9], ID)
if f.status == 'waiting' then
  set_wait(f, ARGV[A + 10], ARGV[A + 11], ARGV[A + 12])
  if f.cancel == '1' then
    redis.call('SADD', KEYS[K_CANCELWAIT], ID)
  end
end
flush(f, {})
-- Steps: a hash each, and the step set in the given order.
redis.call('DEL', KEYS[K_STEPS])
for i = 0, nsteps - 1 do
  local at = first_step + 9 * i
  local key = KEYS[17 + i]
  redis.call('DEL', key)
  redis.call('HSET', key, 'id', ARGV[at], 'flow_id', ID, 'runtime', ARGV[at + 1],
    'run_id', ARGV[at + 2], 'task', ARGV[at + 3], 'status', ARGV[at + 4],
    'created', ARGV[at + 7], 'updated', ARGV[at + 8])
  if ARGV[at + 5] ~= '' then
    redis.call('HSET', key, 'child_session_key', ARGV[at + 5])
  end
  if ARGV[at + 6] ~= '' then
    redis.call('HSET', key, 'result_json', ARGV[at + 6])
  end
  redis.call('ZADD', KEYS[K_STEPS], i + 1, ARGV[at + 2])
end
-- Events: newest at the head, as push_event keeps them.
redis.call('DEL', KEYS[K_EVENTS])
for i = 0, nevents - 1 do
  local at = first_event + 3 * i
  redis.call('LPUSH', KEYS[K_EVENTS], '{"kind":' .. ARGV[at] .. ',"rev":' .. f.rev ..
    ',"at":' .. ARGV[at + 1] .. ',"payload":' .. ARGV[at + 2] .. '}')
end
return reply()
