-- write_flow.lua: the store-level compare-and-set: write a whole flow
-- record if its revision still matches, and append one event.
--
-- KEYS: the flow key set 1..13 (see lib.lua).
-- ARGV: 1..6 the common head (4, the expected revision, is required)
--   7 status  8 controller_id  9 goal  10 owner_session_key (must equal
--   the stored one)  11 requester_origin  12 current_step
--   13 cancel_requested ('1'/'0')  14 wait JSON ('' = none)
--   15 timer deadline ms ('')  16 correlation member ('')
--   17 event kind (JSON string)  18 event payload (JSON)
--   19.. the whole state ('object' or 'replace', see apply_state)
-- Returns: {flow hash, state hash, event entry}.
-- Errors: NOTFOUND, REVISION <exp> <act>, IMMUTABLE owner_session_key,
--   TOOLARGE <size>.
-- Events: the given kind.

local f = load_flow()
if f == nil then
  return err('NOTFOUND')
end
local e = check_revision(f)
if e then
  return e
end
if ARGV[10] ~= f.owner_session_key then
  return err('IMMUTABLE', 'owner_session_key')
end
e = apply_state(f, 19)
if e then
  return e
end
clear_wait(f)
redis.call('HSET', KEYS[K_FLOW], 'controller_id', ARGV[8], 'goal', ARGV[9],
  'requester_origin', ARGV[11], 'current_step', ARGV[12],
  'cancel_requested', ARGV[13])
f.cancel_requested = ARGV[13]
set_status(f, ARGV[7])
if ARGV[7] == 'waiting' then
  if ARGV[14] ~= '' then
    set_wait(f, ARGV[14], ARGV[15], ARGV[16])
  end
  if ARGV[13] == '1' then
    redis.call('SADD', KEYS[K_CANCELWAIT], ID)
  end
end
bump(f)
local entry = append_event(f, ARGV[17], ARGV[18])
return reply(entry)
