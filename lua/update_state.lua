-- update_state.lua: shallow-merge a patch into a flow's state and
-- optionally set its current step; the status does not change.
--
-- KEYS: the flow key set 1..16 (see lib.lua).
-- ARGV: 1..7 the common head
--   8 next step ('' keeps the current one)
--   9 payload of the state_updated event (JSON)
--   10.. the state change (see apply_state)
-- Returns: {flow hash, state hash, ''}.
-- Errors: NOTFOUND, REVISION <exp> <act>, LEASELOST, TERMINAL <status>,
--   CANCELPENDING <status>, TOOLARGE <size>.
-- Events: state_updated.

local f = load_flow()
if f == nil then
  return err('NOTFOUND')
end
local e = check_revision(f) or check_lease(f) or check_mutable(f)
if e then
  return e
end
e = apply_state(f, 10)
if e then
  return e
end
if ARGV[8] ~= '' then
  redis.call('HSET', KEYS[K_FLOW], 'current_step', ARGV[8])
end
bump(f)
append_event(f, '"state_updated"', ARGV[9])
return reply()
