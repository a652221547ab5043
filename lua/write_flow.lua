-- write_flow.lua: the store-level compare-and-set: write a whole flow
-- record if its revision still matches, and append one event.
--
-- KEYS: the flow key set 1..16 (see lib.lua).
-- ARGV: 1..7 the common head (4, the expected revision, is required)
--   8 status  9 controller_id  10 goal  11 owner_session_key (must equal
--   the stored one)  12 requester_origin  13 current_step
--   14 cancel_requested ('1'/'0')  15 wait JSON ('' = none)
--   16 timer deadline ms ('')  17 correlation member ('')
--   18 event kind (JSON string)  19 event payload (JSON)
--   20.. the whole state ('object' or 'replace', see apply_state)
-- Returns: {flow hash, state hash, event entry}.
-- Errors: NOTFOUND, REVISION <exp> <act>, LEASELOST,
--   IMMUTABLE owner_session_key,
--   TOOLARGE <size>.
-- Events: the given kind.

local f = load_flow()
if f == nil then
  return err('NOTFOUND')
end
local e = check_revision(f) or check_lease(f)
if e then
  return e
end
if ARGV[11] ~= f.owner_session_key then
  return err('IMMUTABLE', 'owner_session_key')
end
e = apply_state(f, 20)
if e then
  return e
end
clear_wait(f)
redis.call('HSET', KEYS[K_FLOW], 'controller_id', ARGV[9], 'goal', ARGV[10],
  'requester_origin', ARGV[12], 'current_step', ARGV[13],
  'cancel_requested', ARGV[14])
f.cancel_requested = ARGV[14]
set_status(f, ARGV[8])
if ARGV[8] == 'waiting' then
  if ARGV[15] ~= '' then
    set_wait(f, ARGV[15], ARGV[16], ARGV[17])
  end
  if ARGV[14] == '1' then
    redis.call('SADD', KEYS[K_CANCELWAIT], ID)
  end
end
bump(f)
local entry = append_event(f, ARGV[18], ARGV[19])
return reply(entry)
