-- sched_delete.lua: delete a schedule (Manager.DeleteSchedule): its hash,
-- its history and its entries in the due and names indexes. Flows it made
-- stay.
--
-- KEYS: 1 the schedule's hash  2 the due index  3 the names index
--   4 the schedule's history list  5 the totals hash  6 the name's
--   tombstone (string, a minute) (all on the {sched} tag)
-- ARGV: 1 name  2 call id, kept in the tombstone; '' for the tick's drop
--   of a due name without a schedule, which deletes nothing that exists
-- Returns: 1 (also for a repeat of this call, whose reply was lost: the
--   tombstone holds its call id); 0 for the tick's drop when the schedule
--   exists (made again since the tick read it: left alone).
-- Errors: NOTFOUND (no such schedule; an index entry left for it by a
--   hand edit is removed: the tick calls this for a due name without a
--   hash, atomically with any create of that name).
-- Events: none.
--@include prelude
--@include errors
--@include schedules

local paused = redis.call('HGET', KEYS[1], 'paused')
if not paused then
  if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('ZREM', KEYS[2], ARGV[1])
    redis.call('ZREM', KEYS[3], ARGV[1])
  end
  if ARGV[2] ~= '' and redis.call('GET', KEYS[6]) == ARGV[2] then
    return 1
  end
  return err(ERR.NOTFOUND)
end
if ARGV[2] == '' then
  return 0
end
sched_paused(KEYS[5], paused, '0')
redis.call('DEL', KEYS[1], KEYS[4])
redis.call('SET', KEYS[6], ARGV[2], 'PX', 60000)
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
