-- insert_flow.lua: insert a whole flow as another store kept it (an
-- importer's call): its id, status, revision, timestamps, wait, state and
-- cancel flag as given, with its steps and its audit log, and every index
-- entry its record implies; all or nothing.
--
-- KEYS: the flow key set 1..15 (include/context.lua), 16 the owner
--   index; 17.. the step hashes, in the order of the steps in ARGV.
-- ARGV: 1..9 the common head (include/context.lua); 2, "now", is the
--   flow's updated_at
--   (the time the status and ready indexes record); 4,
--   5 and 7 are ignored, 9 (the log's byte bound) only says whether to
--   record the log's size: the caller cut the events to it (A below is
--   the head's length: the own arguments follow it)
--   A+1 status  A+2 controller_id  A+3 goal  A+4 owner_session_key
--   A+5 requester_origin  A+6 current_step  A+7 cancel ('1' or '')
--   A+8 revision  A+9 created_at (unix ms)
--   A+10 wait JSON ('' = none; only for waiting)
--   A+11 timer deadline ms ('' = not a timer)
--   A+12 correlation member ('' = not an external event)
--   A+13 step count S  A+14 event count E  A+15 id of the newest event
--   A+16 search attribute count K, then K pairs name, value
--     (include/attrs.lua; Go checked them)
--   then S steps of 9: id, runtime, run id, task, status, child session
--     key (''), result JSON (''), created ms, updated ms
--   then E events of 3, oldest first: kind (a JSON string), at (unix ms),
--     payload (JSON); every entry carries the flow's revision
--   then the state (see apply_state: 'object' or 'replace').
-- Returns: {flow hash (record and state, or record only), ''}.
-- Errors: EXISTS (a flow with that id is stored, unless by this very
--   call: a call re-sent after its reply was lost answers with the
--   flow), TOOLARGE <size>.
-- Indexes: as its record implies, its controller's and its attributes'
--   (include/attrs.lua) too.
-- Events: none announced; the given entries become the audit log (leftover
--   events and step sets of a flow that does not exist are replaced).

--@include prelude
--@include errors
--@include context
--@include record
--@include calls
--@include state
--@include queues
--@include waits
--@include events
--@include attrs

local c = mutation_context(KEYS, ARGV)
local owner_index = KEYS[16]
local A = 9
local old = load_flow(c)
if repeated(c, old) then
  return reply(c)
end
if redis.call('EXISTS', c.flow) == 1 then
  return err(ERR.EXISTS)
end
local nsteps, nevents = tonumber(ARGV[A + 13]), tonumber(ARGV[A + 14])
local nattrs = tonumber(ARGV[A + 16])
local first_step = A + 17 + 2 * nattrs
local first_event = first_step + 9 * nsteps
local state_at = first_event + 3 * nevents
local f = {status = nil, rev = ARGV[A + 8], controller = ARGV[A + 2]}
local e = apply_state(c, f, state_at)
if e then
  return e
end
set_fields(c, 'controller', ARGV[A + 2], 'goal', ARGV[A + 3], 'owner', ARGV[A + 4],
  'origin', ARGV[A + 5], 'step', ARGV[A + 6], 'cancel', ARGV[A + 7],
  'rev', ARGV[A + 8], 'created', ARGV[A + 9], 'updated', c.now,
  'seq', ARGV[A + 15])
f.cancel = ARGV[A + 7]
set_status(c, f, ARGV[A + 1])
redis.call('ZADD', owner_index, ARGV[A + 9], c.id)
if ARGV[A + 2] ~= '' then -- a flow without a controller is in no controller's index
  redis.call('ZADD', ctl_key(c, ARGV[A + 2]), ARGV[A + 9], c.id)
end
if STATUS[f.status].waits then
  set_wait(c, f, ARGV[A + 10], ARGV[A + 11], ARGV[A + 12])
  if f.cancel == '1' then
    redis.call('SADD', c.cancelwait, c.id)
  end
end
local extra = {}
index_attrs(c, ARGV[A + 9], ARGV, A + 17, nattrs, extra)
remember_pairs(c, f, extra)
flush(c, f, extra)
-- Steps: a hash each, and the step set in the given order.
redis.call('DEL', c.steps)
for i = 0, nsteps - 1 do
  local at = first_step + 9 * i
  local key = KEYS[17 + i]
  redis.call('DEL', key)
  redis.call('HSET', key, 'id', ARGV[at], 'flow_id', c.id, 'runtime', ARGV[at + 1],
    'run_id', ARGV[at + 2], 'task', ARGV[at + 3], 'status', ARGV[at + 4],
    'created', ARGV[at + 7], 'updated', ARGV[at + 8])
  if ARGV[at + 5] ~= '' then
    redis.call('HSET', key, 'child_session_key', ARGV[at + 5])
  end
  if ARGV[at + 6] ~= '' then
    redis.call('HSET', key, 'result_json', ARGV[at + 6])
  end
  redis.call('ZADD', c.steps, i + 1, ARGV[at + 2])
end
-- Events: newest at the head, as push_event keeps them.
redis.call('DEL', c.events)
local eb = 0
for i = 0, nevents - 1 do
  local at = first_event + 3 * i
  local entry = entry_of(ARGV[at], f.rev, ARGV[at + 1], ARGV[at + 2], '')
  redis.call('LPUSH', c.events, entry)
  eb = eb + #entry
end
if c.event_bytes > 0 then
  redis.call('HSET', c.flow, 'eb', eb) -- the log's size (events.lua)
end
return reply(c)
