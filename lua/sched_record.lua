-- sched_record.lua: record fires made outside the tick
-- (Manager.TriggerSchedule, BackfillSchedule) in a schedule's history,
-- counters and the totals; its timing is left alone.
--
-- KEYS: 1 the schedule's hash  2 its history list  3 the totals hash
--   (all on the {sched} tag)
-- ARGV: 1 expected id  2 call id (kept as field 'call')  3 last flow
--   ('' = unchanged)  4 last fire entry ('' = unchanged)  5 fires made
--   6.. history entries, oldest first (include/schedules.lua)
-- Returns: 1 (also for a repeat of this call, whose reply was lost:
--   nothing written).
-- Errors: NOTFOUND (the schedule was deleted, or made again: a new id).
-- Events: none.
--@include prelude
--@include errors
--@include schedules

if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then
  return err(ERR.NOTFOUND)
end
if redis.call('HGET', KEYS[1], 'call') == ARGV[2] then
  return 1
end
redis.call('HSET', KEYS[1], 'call', ARGV[2])
local entries = {}
for i = 6, #ARGV do
  entries[#entries + 1] = ARGV[i]
end
sched_record(KEYS[1], KEYS[2], KEYS[3], entries, tonumber(ARGV[5]), 0, ARGV[3], ARGV[4])
return 1
