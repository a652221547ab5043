-- update_state.lua: shallow-merge a patch into a flow's state and
-- optionally set its current step; the status does not change.
--
-- KEYS: the flow key set 1..13 (see lib.lua).
-- ARGV: 1..6 the common head
--   7 next step ('' keeps the current one)
--   8 payload of the state_updated event (JSON)
--   9.. the state change (see apply_state)
-- Returns: {flow hash, state hash, ''}.
-- Errors: NOTFOUND, REVISION <exp> <act>, TERMINAL <status>,
--   CANCELPENDING <status>, TOOLARGE <size>.
-- Events: state_updated.

local f = load_flow()
if f == nil then
  return err('NOTFOUND')
end
local e = check_revision(f) or check_mutable(f)
if e then
  return e
end
e = apply_state(f, 9)
if e then
  return e
end
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[K_FLOW], 'current_step', ARGV[7])
end
bump(f)
append_event(f, '"state_updated"', ARGV[8])
return reply()
