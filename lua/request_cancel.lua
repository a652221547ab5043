-- request_cancel.lua: set the sticky cancel intent. On a terminal or an
-- already cancel-requested flow nothing changes and the flow is returned.
--
-- KEYS: the flow key set 1..15 (include/context.lua).
-- ARGV: 1..9 the common head (include/context.lua).
-- Returns: {flow hash, 'unchanged' or ''}.
-- Errors: NOTFOUND, REVISION <exp> <act>, LEASELOST.
--   COUNTLIMIT <rev> <seq> (the revision or event id could pass
--   MAX_COUNT, Go's MaxRevision: include/events.lua; nothing written).
-- Events: cancel_requested (only when something changed). A flow in a
--   status that waits is also added to the cancel set, where the
--   engine's tick finds it.
--@include prelude
--@include context
--@include record
--@include guards
--@include events

local c = mutation_context(KEYS, ARGV)
local f, e, seen = load_checked(c, MUTATE_FIELDS)
if seen or e then
  return e or reply(c)
end
if STATUS[f.status].terminal or f.cancel == '1' then
  return reply(c, 'unchanged')
end
f.cancel = '1'
if STATUS[f.status].waits then
  redis.call('SADD', c.cancelwait, c.id)
end
commit(c, f, '"cancel_requested"', '{}', {'cancel', '1'})
return reply(c)
