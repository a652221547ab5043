-- write_flow.lua: the store-level compare-and-set: write a whole flow
-- record if its revision still matches, and append one event.
--
-- KEYS: the flow key set 1..15 (see lib.lua).
-- ARGV: 1..8 the common head (4, the expected revision, is required)
--   9 status  10 controller_id  11 goal  12 owner_session_key (must equal
--   the stored one)  13 requester_origin  14 current_step
--   15 cancel_requested ('1'/'0')  16 wait JSON ('' = none)
--   17 timer deadline ms ('')  18 correlation member ('')
--   19 event kind (JSON string)  20 event payload (JSON)
--   21.. the whole state ('object' or 'replace', see apply_state)
-- Returns: {flow hash, '<event id> <entry>'}.
-- Errors: NOTFOUND, REVISION <exp> <act>, LEASELOST,
--   IMMUTABLE owner_session_key,
--   TOOLARGE <size>.
-- Events: the given kind.

RECORD_SEQ = true -- a repeat answers with this call's event
local seen = repeated()
if seen then
  return reply(event_of(seen))
end
local f = load_flow()
if f == nil then
  return err('NOTFOUND')
end
local e = check_revision(f) or check_lease(f)
if e then
  return e
end
if ARGV[12] ~= f.owner then
  return err('IMMUTABLE', 'owner')
end
e = apply_state(f, 21)
if e then
  return e
end
clear_wait(f)
local cancel = ''
if ARGV[15] == '1' then
  cancel = '1'
end
set_fields('controller', ARGV[10], 'goal', ARGV[11], 'origin', ARGV[13],
  'step', ARGV[14], 'cancel', cancel)
f.cancel = cancel
if (f.controller or '') ~= ARGV[10] then
  -- A new controller: a queued running flow moves to its queue; a flow
  -- that becomes running is queued there by set_status.
  local queued = f.status == 'running' and redis.call('ZREM', ready_key(f), ID) == 1
  f.controller = ARGV[10]
  if queued and ARGV[9] == 'running' then
    make_ready(f)
  end
end
set_status(f, ARGV[9])
if ARGV[9] == 'waiting' then
  if ARGV[16] ~= '' then
    set_wait(f, ARGV[16], ARGV[17], ARGV[18])
  end
  if ARGV[15] == '1' then
    redis.call('SADD', KEYS[K_CANCELWAIT], ID)
  end
end
local entry = commit(f, ARGV[19], ARGV[20])
return reply(entry)
