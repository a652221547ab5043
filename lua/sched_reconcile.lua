-- sched_reconcile.lua: an engine whose tick made fires' flows but whose
-- advance was stale (sched_advance.lua returned 0) corrects the record
-- another engine left: under OverlapSkip or a catch-up policy, two
-- engines that read the previous flow (or the clock) at different
-- moments may decide differently, and the one that advanced first may
-- have recorded as skipped a fire whose flow the other made. Each such
-- skip in the history (the last 100 entries) becomes the fire, the
-- counters and totals move one skip to the fires, and the newest
-- corrected fire becomes the schedule's last flow (the previous flow for
-- Overlap) when it is newer than the last fire recorded. A fire the
-- history does not hold as skipped is left alone: it is still due (the
-- next tick makes it again, idempotently, and records it), or recorded
-- fired already, or fell out of the history.
--
-- KEYS: 1 the schedule's hash  2 its history list  3 the totals hash
--   (all on the {sched} tag)
-- ARGV: 1 expected id  2.. the fires made, history entries
--   (include/schedules.lua), outcome 'fired'
-- Returns: how many skips became fires (0 when the schedule was deleted
--   or made again: another id).
-- Events: none.

if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then
  return 0
end
local made = {}
for i = 2, #ARGV do
  local at = string.match(ARGV[i], '^(%d+) ')
  if at then
    made[at] = ARGV[i]
  end
end
local n, newest, newestAt = 0, nil, nil
local hist = redis.call('LRANGE', KEYS[2], 0, 99)
for i, e in ipairs(hist) do
  local at, outcome = string.match(e, '^(%d+) (%S+) ')
  if outcome == 'skipped' and made[at] then
    redis.call('LSET', KEYS[2], i - 1, made[at])
    if not newestAt or tonumber(at) > newestAt then
      newest, newestAt = made[at], tonumber(at)
    end
    made[at] = nil
    n = n + 1
  end
end
if n == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[1], 'fired', n)
redis.call('HINCRBY', KEYS[1], 'skipped', -n)
redis.call('HINCRBY', KEYS[3], 'fires', n)
redis.call('HINCRBY', KEYS[3], 'skips', -n)
local lastAt = tonumber(string.match(redis.call('HGET', KEYS[1], 'lastfire') or '', '^(%d+) ') or '')
if not lastAt or lastAt < newestAt then
  redis.call('HSET', KEYS[1], 'last', string.match(newest, '^%S+ %S+ %S+ (%S+) '), 'lastfire', newest)
end
return n
