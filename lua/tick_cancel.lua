-- tick_cancel.lua: the engine's tick cancels a waiting flow whose cancel
-- was requested, found in the shard's cancel set. An entry the tick
-- cannot act on (the flow is gone, not waiting, or has no cancel request)
-- is dropped from the set, so no tick meets it again.
--
-- KEYS: the flow key set 1..15 (include/context.lua).
-- ARGV: 1..9 the common head (include/context.lua; 4 and 7 unused).
-- Returns: {flow hash (record and state, or record only), ''}.
-- Errors: STALE (the entry named no flow to cancel: it was dropped).
--   COUNTLIMIT <rev> <seq> (the revision or event id could pass
--   MAX_COUNT, Go's MaxRevision: include/events.lua; nothing written).
-- Events: cancelled.
--@include prelude
--@include errors
--@include context
--@include record
--@include queues
--@include waits
--@include events

local c = mutation_context(KEYS, ARGV)
local f = load_flow(c)
if f == nil or not STATUS[f.status].waits or f.cancel ~= '1' then
  redis.call('SREM', c.cancelwait, c.id)
  return err(ERR.STALE)
end
local e = check_counts(f)
if e then
  return e
end
clear_wait(c, f)
redis.call('SREM', c.cancelwait, c.id)
set_status(c, f, S_CANCELLED)
commit(c, f, '"cancelled"', '{}')
return reply(c)
