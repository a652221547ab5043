-- append_event_at.lua: append one audit event with its own timestamp (an
-- importer's or tool's call). The flow record does not change: the event
-- carries the current revision, as a step observation's does.
--
-- KEYS: the flow key set 1..15 (include/context.lua).
-- ARGV: 1..9 the common head (include/context.lua); 2, "now", is the
--   event's own time; 4 an expected revision ('' = any); 7 (lease) and 8
--   (reply) unused
--   then, as the last two arguments (so a longer head changes nothing):
--   event kind (a JSON string), payload (JSON)
-- Returns: '<event id> <entry>'.
-- Errors: NOTFOUND, REVISION <expected> <actual>. A call re-sent after
--   its reply was lost answers with the event it appended.
--   COUNTLIMIT <rev> <seq> (the revision or event id could pass
--   MAX_COUNT, Go's MaxRevision: include/events.lua; nothing written).
-- Events: the given one, announced on the shard's watch channel; the
--   oldest entries beyond the log's bounds are trimmed.
--@include errors
--@include context
--@include calls
--@include guards
--@include events

local c = mutation_context(KEYS, ARGV)
local A = #ARGV - 2 -- the head's length
local f, e, seen = load_checked(c, MUTATE_FIELDS)
if seen then
  return event_of(c, seen)
end
if e then
  return e
end
local extra = {}
remember_pairs(c, f, extra, tostring(tonumber(f.seq or '0') + 1))
return append_event(c, f, ARGV[A + 1], ARGV[A + 2], extra)
