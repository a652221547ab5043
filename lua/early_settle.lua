-- early_settle.lua: end a claim once its flow decided (deliver_event.lua):
-- a used event is gone for good, and remembered as used; a refused one
-- goes back to the head of its pair's early-event list (it is the oldest)
-- unless it expired or the list is full. Settling twice is harmless and
-- answers as the first did: the claim is gone, and a refused event that
-- went back is still at the head of the list (unless taken since).
--
-- KEYS: 1 the shard's claims hash  2 the shard's claim due zset
--   3 the pair's early-event list  4 the shard's early-event index
--   5 the shard's used-event zset (event id by when it is forgotten)
--   6 the name key of the take that made the claim (early_take.lua;
--     deleted: the claim it names ends)
-- ARGV: 1 event id  2 outcome ('used' or 'refused')  3 now (unix ms)
--   4 cap: events kept per pair
--   5 how long to remember a used event, in ms: a keep re-sent late, or
--     a bridge message handled again, is then not kept a second time
--     (early_keep.lua)
--   6 cap: used events remembered on the shard (past it the oldest is
--     forgotten)
-- Returns: 1 when the event went back to its list, else 0.
-- Events: none.
--@include used

local id, now = ARGV[1], tonumber(ARGV[3])
local c = redis.call('HGET', KEYS[1], id)
if not c then
  -- Settled before (a re-sent settle): answer as the first run did.
  local head = redis.call('LINDEX', KEYS[3], 0)
  if ARGV[2] == 'refused' and head and string.sub(head, 1, #id + 1) == id .. ' ' then
    return 1
  end
  return 0
end
redis.call('HDEL', KEYS[1], id)
redis.call('ZREM', KEYS[2], id)
redis.call('DEL', KEYS[6])
if ARGV[2] ~= 'refused' then
  if ARGV[2] == 'used' then
    used_add(KEYS[5], id, now, tonumber(ARGV[5]), tonumber(ARGV[6]))
  end
  return 0
end
local n, rest = string.match(c, '^%S+ (%d+) (.*)$')
if n == nil then
  return 0
end
local entry = string.sub(rest, tonumber(n) + 1)
local dl = tonumber(string.match(entry, '^%S+ (%d+) ') or '0')
if dl <= now or redis.call('LLEN', KEYS[3]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('LPUSH', KEYS[3], entry)
if redis.call('PTTL', KEYS[3]) < dl - now then
  redis.call('PEXPIRE', KEYS[3], dl - now)
end
redis.call('ZADD', KEYS[4], dl, id)
if redis.call('PTTL', KEYS[4]) < dl - now then
  redis.call('PEXPIRE', KEYS[4], dl - now)
end
return 1
