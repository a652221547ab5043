-- create.lua: create a flow (managed: status created, revision 0;
-- mirrored: created then started, revision 1) with its events.
--
-- KEYS: the flow key set 1..14 (see lib.lua), owner index included.
-- ARGV: 1..6 the common head (4, expected revision, is ignored)
--   7 controller_id  8 goal  9 owner_session_key  10 requester_origin
--   11 current_step  12 mirrored ('1' or '0')
--   13 payload of the created event (JSON)
--   14.. the initial state (see apply_state: 'object' or 'replace')
-- Returns: {flow hash, state hash, ''}.
-- Errors: EXISTS (id already used), TOOLARGE <size>.
-- Events: created (revision 0); mirrored also started (revision 1).

if redis.call('EXISTS', KEYS[K_FLOW]) == 1 then
  return err('EXISTS')
end
local f = {status = nil, revision = '0'}
local e = apply_state(f, 14)
if e then
  return e
end
redis.call('HSET', KEYS[K_FLOW],
  'controller_id', ARGV[7], 'goal', ARGV[8],
  'owner_session_key', ARGV[9], 'requester_origin', ARGV[10],
  'current_step', ARGV[11], 'cancel_requested', '0', 'revision', '0',
  'created_at', NOW_MS, 'updated_at', NOW_MS)
set_status(f, 'created')
redis.call('ZADD', KEYS[K_OWNER], NOW_MS, ID)
append_event(f, '"created"', ARGV[13])
if ARGV[12] == '1' then
  set_status(f, 'running')
  bump(f)
  append_event(f, '"started"', '{}')
end
return reply()
