-- release_lease.lua: give a leased flow back; a runnable flow goes back
-- on its ready queue for another worker.
--
-- KEYS: the flow key set 1..15 (include/context.lua).
-- ARGV: 1..9 the common head (include/context.lua; 7, the lease token,
--   is required).
-- Returns: 1.
-- Errors: NOTFOUND, LEASELOST (expired, or another worker's).
--   COUNTLIMIT <rev> <seq> (the revision or event id could pass
--   MAX_COUNT, Go's MaxRevision: include/events.lua; nothing written).
-- Events: released, with the lease token; the revision does not change.
--@include prelude
--@include context
--@include guards
--@include queues
--@include events

local c = mutation_context(KEYS, ARGV)
local f, e, seen = load_checked(c)
if seen then
  return 1
end
if e then
  return e
end
drop_lease(c, c.lease)
if STATUS[f.status].runnable then
  make_ready(c, f)
end
append_event(c, f, '"released"', '{}')
return 1
