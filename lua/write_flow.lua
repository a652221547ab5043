-- write_flow.lua: the store-level compare-and-set: write a whole flow
-- record if its revision still matches, and append one event.
--
-- KEYS: the flow key set 1..15 (include/context.lua).
-- ARGV: 1..9 the common head (include/context.lua; 4, the expected
--   revision, is required)
--   10 status  11 controller_id  12 goal  13 owner_session_key (must
--   equal the stored one)  14 requester_origin  15 current_step
--   16 cancel_requested ('1'/'0')  17 wait JSON ('' = none)
--   18 timer deadline ms ('')  19 correlation member ('')
--   20 event kind (JSON string)  21 event payload (JSON)
--   22.. the whole state ('object' or 'replace', include/state.lua)
-- Returns: {flow hash, '<event id> <entry>'}.
-- Errors: NOTFOUND, REVISION <exp> <act>, LEASELOST,
--   IMMUTABLE owner_session_key, TOOLARGE <size>.
--   COUNTLIMIT <rev> <seq> (the revision or event id could pass
--   MAX_COUNT, Go's MaxRevision: include/events.lua; nothing written).
-- Events: the given kind. A new controller moves the flow to its
--   controller's index (include/attrs.lua); attributes do not change.
--@include prelude
--@include errors
--@include context
--@include record
--@include calls
--@include guards
--@include state
--@include queues
--@include waits
--@include events
--@include attrs

local c = mutation_context(KEYS, ARGV)
local f, e, seen = load_checked(c)
if seen then
  return reply(c, event_of(c, seen)) -- a repeat answers with its event
end
if e then
  return e
end
if ARGV[13] ~= f.owner then
  return err(ERR.IMMUTABLE, 'owner')
end
e = apply_state(c, f, 22)
if e then
  return e
end
clear_wait(c, f)
local cancel = ''
if ARGV[16] == '1' then
  cancel = '1'
end
set_fields(c, 'controller', ARGV[11], 'goal', ARGV[12], 'origin', ARGV[14],
  'step', ARGV[15], 'cancel', cancel)
f.cancel = cancel
if (f.controller or '') ~= ARGV[11] then
  -- A new controller: a queued runnable flow moves to its queue; a flow
  -- that becomes runnable is queued there by set_status.
  local queued = STATUS[f.status].runnable and redis.call('ZREM', ready_key(c, f.controller), c.id) == 1
  if f.controller then
    redis.call('ZREM', ctl_key(c, f.controller), c.id)
  end
  if ARGV[11] ~= '' then -- a flow without a controller is in no controller's index
    redis.call('ZADD', ctl_key(c, ARGV[11]), f.created or '0', c.id)
  end
  f.controller = ARGV[11]
  if queued and STATUS[ARGV[10]].runnable then
    make_ready(c, f)
  end
end
set_status(c, f, ARGV[10])
if STATUS[ARGV[10]].waits then
  if ARGV[17] ~= '' then
    set_wait(c, f, ARGV[17], ARGV[18], ARGV[19])
  end
  if ARGV[16] == '1' then
    redis.call('SADD', c.cancelwait, c.id)
  end
end
local entry = commit(c, f, ARGV[20], ARGV[21], nil, true)
return reply(c, entry)
