-- create.lua: create a flow (managed: status created, revision 0;
-- mirrored: created then started, revision 1) with its events.
--
-- KEYS: the flow key set 1..16 (see lib.lua), owner index included.
-- ARGV: 1..8 the common head (4, expected revision, is ignored)
--   9 controller_id  10 goal  11 owner_session_key  12 requester_origin
--   13 current_step  14 mirrored ('1' or '0')
--   15 payload of the created event (JSON)
--   16 idempotency fingerprint ('' = no key): the flow id was derived
--      from the key, and this hash of the input is kept as field 'idem'
--   17 W3C traceparent of the creating call ('' = none; kept as 'tp')
--   18.. the initial state (see apply_state: 'object' or 'replace')
-- Returns: {flow hash (record and state, or record only), ''}, or
--   {the existing flow, 'existing'} when a flow with this id was made
--   with the same fingerprint (nothing written).
-- Errors: EXISTS (id already used), IDEMCONFLICT (the id's flow was made
--   from other input), TOOLARGE <size>.
-- Events: created (revision 0); mirrored also started (revision 1).

if repeated() then
  return reply()
end
if redis.call('EXISTS', KEYS[K_FLOW]) == 1 then
  if ARGV[16] == '' then
    return err('EXISTS')
  end
  if redis.call('HGET', KEYS[K_FLOW], 'idem') == ARGV[16] then
    return reply('existing')
  end
  return err('IDEMCONFLICT')
end
local f = {status = nil, rev = '0', controller = ARGV[9]}
local e = apply_state(f, 18)
if e then
  return e
end
set_fields('controller', ARGV[9], 'goal', ARGV[10], 'owner', ARGV[11],
  'origin', ARGV[12], 'step', ARGV[13], 'rev', '0', 'created', NOW_MS,
  'updated', NOW_MS, 'idem', ARGV[16], 'tp', ARGV[17])
set_status(f, 'created')
redis.call('ZADD', KEYS[K_OWNER], NOW_MS, ID)
flush(f, {})
append_event(f, '"created"', ARGV[15])
if ARGV[14] == '1' then
  set_status(f, 'running')
  commit(f, '"started"', '{}')
end
return reply()
