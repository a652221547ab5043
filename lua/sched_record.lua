-- sched_record.lua: record fires made outside the tick
-- (Manager.TriggerSchedule, BackfillSchedule) in a schedule's history,
-- counters and the totals; its timing is left alone.
--
-- KEYS: 1 the schedule's hash  2 its history list  3 the totals hash
--   (all on the {sched} tag)
-- ARGV: 1 expected id  2 last flow ('' = unchanged)  3 last fire entry
--   ('' = unchanged)  4 fires made  5.. history entries, oldest first
--   (include/schedules.lua)
-- Returns: 1.
-- Errors: NOTFOUND (the schedule was deleted, or made again: a new id).
-- Events: none.
--@include prelude
--@include errors
--@include schedules

if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then
  return err(ERR.NOTFOUND)
end
local entries = {}
for i = 5, #ARGV do
  entries[#entries + 1] = ARGV[i]
end
sched_record(KEYS[1], KEYS[2], KEYS[3], entries, tonumber(ARGV[4]), 0, ARGV[2], ARGV[3])
return 1
