-- sched_write.lua: change a schedule (UpdateSchedule, PauseSchedule,
-- ResumeSchedule) if it is still the one the caller read: same id (not
-- deleted and made again) and same revision. The revision goes up by
-- one, so an engine's advance computed from the old schedule is stale
-- (sched_advance.lua).
--
-- KEYS: 1 the schedule's hash  2 the due index (zset)  3 the totals hash
--   (all on the {sched} tag)
-- ARGV: 1 name  2 expected id  3 expected revision  4 due (unix ms;
--   '' = not due: paused or done)  5 paused ('1' or '0')  6 call id (kept
--   as field 'call')  7.. fields and values to set, in pairs
-- Returns: the new revision (for a repeat of this call, whose reply was
--   lost, the current one: nothing written).
-- Errors: NOTFOUND (no such schedule, or another of the same name),
--   REVISION '<expected> <actual>' (changed since read; nothing written).
-- Events: none.
--@include prelude
--@include errors
--@include schedules

local cur = redis.call('HMGET', KEYS[1], 'id', 'rev', 'paused')
if cur[1] ~= ARGV[2] then
  return err(ERR.NOTFOUND)
end
if cur[2] ~= ARGV[3] then
  if redis.call('HGET', KEYS[1], 'call') == ARGV[6] then
    return tonumber(cur[2])
  end
  return err(ERR.REVISION, ARGV[3] .. ' ' .. tostring(cur[2]))
end
local fields = {}
for i = 7, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], 'paused', ARGV[5], 'call', ARGV[6], unpack(fields))
sched_paused(KEYS[3], cur[3], ARGV[5])
local rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
sched_index(KEYS[2], ARGV[1], ARGV[4])
return rev
