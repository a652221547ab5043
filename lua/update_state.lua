-- update_state.lua: shallow-merge a patch into a flow's state and
-- optionally set its current step; the status does not change.
--
-- KEYS: the flow key set 1..15 (see lib.lua).
-- ARGV: 1..8 the common head
--   9 next step ('' keeps the current one)
--   10 payload of the state_updated event (JSON)
--   11.. the state change (see apply_state)
-- Returns: {flow hash (record and state, or record only), ''}.
-- Errors: NOTFOUND, REVISION <exp> <act>, LEASELOST, TERMINAL <status>,
--   CANCELPENDING <status>, TOOLARGE <size>.
-- Events: state_updated.

if repeated() then
  return reply()
end
local f = load_flow()
if f == nil then
  return err('NOTFOUND')
end
local e = check_revision(f) or check_lease(f) or check_mutable(f)
if e then
  return e
end
e = apply_state(f, 11)
if e then
  return e
end
local extra = {}
if ARGV[9] ~= '' then
  extra = {'step', ARGV[9]}
end
commit(f, '"state_updated"', ARGV[10], extra)
return reply()
