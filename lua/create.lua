-- create.lua: create a flow (managed: status created, revision 0;
-- mirrored: created then started, revision 1) with its events.
--
-- KEYS: the flow key set 1..17 (see lib.lua), owner index included.
-- ARGV: 1..7 the common head (4, expected revision, is ignored)
--   8 controller_id  9 goal  10 owner_session_key  11 requester_origin
--   12 current_step  13 mirrored ('1' or '0')
--   14 payload of the created event (JSON)
--   15.. the initial state (see apply_state: 'object' or 'replace')
-- Returns: {flow hash, state hash, ''}.
-- Errors: EXISTS (id already used), TOOLARGE <size>.
-- Events: created (revision 0); mirrored also started (revision 1).

if redis.call('EXISTS', KEYS[K_FLOW]) == 1 then
  return err('EXISTS')
end
local f = {status = nil, revision = '0', controller_id = ARGV[8]}
local e = apply_state(f, 15)
if e then
  return e
end
redis.call('HSET', KEYS[K_FLOW],
  'controller_id', ARGV[8], 'goal', ARGV[9],
  'owner_session_key', ARGV[10], 'requester_origin', ARGV[11],
  'current_step', ARGV[12], 'cancel_requested', '0', 'revision', '0',
  'created_at', NOW_MS, 'updated_at', NOW_MS)
set_status(f, 'created')
redis.call('ZADD', KEYS[K_OWNER], NOW_MS, ID)
append_event(f, '"created"', ARGV[14])
if ARGV[13] == '1' then
  set_status(f, 'running')
  bump(f)
  append_event(f, '"started"', '{}')
end
return reply()
