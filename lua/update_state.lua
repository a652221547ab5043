-- update_state.lua: shallow-merge a patch into a flow's state and
-- optionally set its current step; the status does not change.
--
-- KEYS: the flow key set 1..15 (include/context.lua).
-- ARGV: 1..9 the common head (include/context.lua)
--   10 next step ('' keeps the current one)
--   11 payload of the state_updated event (JSON)
--   12.. the state change (include/state.lua apply_state)
-- Returns: {flow hash (record and state, or record only), ''}.
-- Errors: NOTFOUND, REVISION <exp> <act>, LEASELOST, TERMINAL <status>,
--   CANCELPENDING <status>, TOOLARGE <size>.
--   COUNTLIMIT <rev> <seq> (the revision or event id could pass
--   MAX_COUNT, Go's MaxRevision: include/events.lua; nothing written).
-- Events: state_updated.
--@include context
--@include record
--@include guards
--@include state
--@include events

local c = mutation_context(KEYS, ARGV)
local f, e, seen = load_checked(c, MUTATE_FIELDS)
if seen or e then
  return e or reply(c)
end
e = check_mutable(f) or apply_state(c, f, 12)
if e then
  return e
end
local extra = {}
if ARGV[10] ~= '' then
  extra = {'step', ARGV[10]}
end
commit(c, f, '"state_updated"', ARGV[11], extra)
return reply(c)
