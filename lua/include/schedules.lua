-- schedules.lua: what the schedule scripts share (schedules.go): the
-- record of fires and skips in a schedule's history, its counters and
-- the flow space's totals. Every key is on the {sched} tag.

-- sched_record pushes entries (oldest first, each '<at ms> <outcome>
-- <reason> <flow id or -> <lag ms>') onto the history list hist (newest
-- first, the last 100 kept), adds fired and skipped to the schedule
-- hash's counters and to the totals in stats, and sets the hash's last
-- flow and last fire when given ('' leaves them).
local function sched_record(hash, hist, stats, entries, fired, skipped, last, lastfire)
  for _, e in ipairs(entries) do
    redis.call('LPUSH', hist, e)
  end
  if #entries > 0 then
    redis.call('LTRIM', hist, 0, 99)
  end
  if fired > 0 then
    redis.call('HINCRBY', hash, 'fired', fired)
    redis.call('HINCRBY', stats, 'fires', fired)
  end
  if skipped > 0 then
    redis.call('HINCRBY', hash, 'skipped', skipped)
    redis.call('HINCRBY', stats, 'skips', skipped)
  end
  if last ~= '' then
    redis.call('HSET', hash, 'last', last)
  end
  if lastfire ~= '' then
    redis.call('HSET', hash, 'lastfire', lastfire)
  end
end

-- sched_index puts name in the due index at due (unix ms), or takes it
-- out when due is '' (paused or done).
local function sched_index(due, name, at)
  if at == '' then
    redis.call('ZREM', due, name)
  else
    redis.call('ZADD', due, tonumber(at), name)
  end
end

-- sched_paused moves the totals' count of paused schedules (stats,
-- field 'paused') by what a write changes: was and now are '1' (paused)
-- or anything else (not).
local function sched_paused(stats, was, now)
  local d = (now == '1' and 1 or 0) - (was == '1' and 1 or 0)
  if d ~= 0 then
    redis.call('HINCRBY', stats, 'paused', d)
  end
end
