-- sched_fail.lua: the engine's tick could not make a due schedule's
-- fires (a create was refused, or failed): it records why on the
-- schedule and moves its due time a while ahead, so the schedule neither
-- holds the head of the due index nor is tried again every tick. A
-- compare-and-set on what the tick read, like sched_advance.lua: a stale
-- one (the schedule was advanced, changed, paused or deleted meanwhile)
-- writes nothing. The tick also takes out of the due index, with no why,
-- a paused schedule it found there (a hand edit: a pause takes it out).
--
-- KEYS: 1 the schedule's hash  2 the due index (both on the {sched} tag)
-- ARGV: 1 name  2 expected id  3 expected revision  4 expected next
--   (unix ms)  5 expected buffered (unix ms, 0 = none)  6 due to retry at
--   (unix ms; '' = out of the due index)  7 why (text; '' = none)
-- Returns: 1 applied, 0 stale (nothing written).
-- Events: none.
--@include schedules

local cur = redis.call('HMGET', KEYS[1], 'id', 'rev', 'next', 'buffered')
if cur[1] ~= ARGV[2] or cur[2] ~= ARGV[3] or cur[3] ~= ARGV[4] or cur[4] ~= ARGV[5] then
  return 0
end
redis.call('HSET', KEYS[1], 'due', ARGV[6] == '' and '0' or ARGV[6])
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[1], 'error', ARGV[7])
end
sched_index(KEYS[2], ARGV[1], ARGV[6])
return 1
