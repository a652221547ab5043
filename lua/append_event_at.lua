-- append_event_at.lua: append one audit event with its own timestamp (an
-- importer's or tool's call). The flow record does not change: the event
-- carries the current revision, as a step observation's does.
--
-- KEYS: the flow key set 1..15 (see lib.lua).
-- ARGV: 1..8 the common head; 2 and 3, "now", are the event's own time;
--   4 an expected revision ('' = any); 7 (lease) and 8 (reply) unused
--   then, as the last two arguments (so a longer head changes nothing):
--   event kind (a JSON string), payload (JSON)
-- Returns: '<event id> <entry>'.
-- Errors: NOTFOUND, REVISION <expected> <actual>.
-- Events: the given one, announced on the shard's watch channel; the
--   oldest entries beyond the event cap are trimmed.

local A = #ARGV - 2 -- the head's length
local f = load_flow()
if f == nil then
  return err('NOTFOUND')
end
local e = check_revision(f)
if e then
  return e
end
return append_event(f, ARGV[A + 1], ARGV[A + 2])
