-- sched_advance.lua: the engine's tick moves a due schedule on after it
-- made the flows of its fires (step 3 of the exactly-once protocol,
-- schedules.go): a compare-and-set on what the tick read (id, revision,
-- next fire, buffered fire). A stale one (another engine advanced it
-- first, or the schedule was changed, paused or deleted) writes nothing:
-- the flows the tick made exist under their derived ids either way.
--
-- KEYS: 1 the schedule's hash  2 the due index  3 the schedule's history
--   list  4 the totals hash (all on the {sched} tag)
-- ARGV: 1 name  2 expected id  3 expected revision  4 expected next
--   (unix ms)  5 expected buffered (unix ms, 0 = none)  6 new next (0 =
--   none: done)  7 new due ('' = out of the due index)  8 new buffered
--   9 done (0 or 1)  10 last flow ('' = unchanged)  11 last fire entry
--   ('' = unchanged)  12 fires made  13 fires skipped  14.. history
--   entries, oldest first (include/schedules.lua)
-- Returns: 1 applied (and the error a failed fire left, sched_fail.lua,
--   cleared), 0 stale (nothing written).
-- Events: none.
--@include schedules

local cur = redis.call('HMGET', KEYS[1], 'id', 'rev', 'next', 'buffered')
if cur[1] ~= ARGV[2] or cur[2] ~= ARGV[3] or cur[3] ~= ARGV[4] or cur[4] ~= ARGV[5] then
  return 0
end
redis.call('HSET', KEYS[1], 'next', ARGV[6], 'due', ARGV[7] == '' and '0' or ARGV[7], 'buffered', ARGV[8], 'done', ARGV[9])
redis.call('HDEL', KEYS[1], 'error')
sched_index(KEYS[2], ARGV[1], ARGV[7])
local entries = {}
for i = 14, #ARGV do
  entries[#entries + 1] = ARGV[i]
end
sched_record(KEYS[1], KEYS[3], KEYS[4], entries, tonumber(ARGV[12]), tonumber(ARGV[13]), ARGV[10], ARGV[11])
return 1
