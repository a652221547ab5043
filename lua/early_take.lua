-- early_take.lua: take an early event out of a pair's list for one flow
-- and record the claim (who gets it, until when) on the same shard, so
-- the event is never in two places and a claim whose holder died is
-- re-driven by the engine's tick (WaitEngine, early.go). A take is
-- named (ARGV 6): run again under its name while its claim stands (a
-- call re-sent after its reply was lost), it answers with the event the
-- first run claimed and takes nothing more, so the call that lost the
-- reply delivers the event itself.
--
-- KEYS: 1 the pair's early-event list  2 the shard's early-event index
--   3 the shard's claims hash (event id -> '<flow id> <n> <corr prefix,
--   n bytes><entry>')  4 the shard's claim due zset (event id by due ms)
--   5 the take's name key (string: the event id it claimed; lives as
--   long as the claim may)
-- ARGV: 1 flow id  2 now (unix ms)  3 claim timeout (ms)
--   4 corr prefix of the pair  5 event id ('' = the oldest kept event)
--   6 the take's name (unique per call)
-- Returns: the claimed entry ('<event id> <deadline ms> <payload>'), or
--   false when there is none (or the given id is no longer kept, or
--   expired: then it is dropped).
--   Expired entries met on the way are dropped (at most the cap).
-- Events: none.

local now = tonumber(ARGV[2])
local took = redis.call('GET', KEYS[5])
if took then
  local c = redis.call('HGET', KEYS[3], took)
  local prefix = ARGV[1] .. ' ' .. #ARGV[4] .. ' ' .. ARGV[4]
  if c and string.sub(c, 1, #prefix) == prefix then
    return string.sub(c, #prefix + 1)
  end
  return false -- the claim was settled or re-driven meanwhile
end
local entry = nil
if ARGV[5] == '' then
  while true do
    local e = redis.call('LPOP', KEYS[1])
    if not e then
      break
    end
    local id, dl = string.match(e, '^(%S+) (%d+) ')
    if id then
      redis.call('ZREM', KEYS[2], id)
    end
    if id and tonumber(dl) > now then
      entry = e
      break
    end
  end
else
  local want = ARGV[5] .. ' '
  for _, e in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
    if string.sub(e, 1, #want) == want then
      redis.call('LREM', KEYS[1], 1, e)
      redis.call('ZREM', KEYS[2], ARGV[5])
      if tonumber(string.match(e, '^%S+ (%d+) ') or '0') > now then
        entry = e
      end
      break
    end
  end
end
if entry == nil then
  return false
end
local id = string.match(entry, '^(%S+)')
redis.call('HSET', KEYS[3], id, ARGV[1] .. ' ' .. #ARGV[4] .. ' ' .. ARGV[4] .. entry)
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[3]), id)
redis.call('SET', KEYS[5], id, 'PX', tonumber(ARGV[3]))
return entry
