-- sched_create.lua: create a schedule (Manager.CreateSchedule): its hash,
-- its entry in the names index and, unless it is paused or done, in the
-- due index.
--
-- KEYS: 1 the schedule's hash  2 the due index (zset)  3 the names index
--   (zset, score 0)  4 the totals hash (all on the {sched} tag)
-- ARGV: 1 name  2 due (unix ms; '' = not due: paused or done)  3 paused
--   ('1' or '0')  4 call id (kept as field 'call')  5.. the hash's fields
--   and values, in pairs
-- Returns: 1 (also for a repeat of this call, whose reply was lost: the
--   schedule holds its call id; nothing written).
-- Errors: EXISTS (a schedule of that name exists; nothing written).
-- Events: none.
--@include prelude
--@include errors
--@include schedules

if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'call') == ARGV[4] then
    return 1
  end
  return err(ERR.EXISTS)
end
local fields = {}
for i = 5, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], 'paused', ARGV[3], 'call', ARGV[4], unpack(fields))
sched_paused(KEYS[4], '0', ARGV[3])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
sched_index(KEYS[2], ARGV[1], ARGV[2])
return 1
