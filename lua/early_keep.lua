-- early_keep.lua: keep an early event published by topic and correlation
-- id in the pair's early-event list, on the pair's rendezvous shard
-- (early.go), until a waiting flow takes it or its retention ends.
--
-- KEYS: 1 the pair's early-event list  2 the shard's early-event index zset
--   3 the shard's claims hash  4 the shard's used-event zset (see
--   early_settle.lua; all on the rendezvous shard's tag)
-- ARGV: 1 event id  2 now (unix ms)  3 retention (ms)
--   4 payload JSON ('' = none)  5 cap: events kept per pair
-- Entries: '<event id> <deadline ms> <payload>', oldest first. Past the
--   cap the oldest is dropped. The list's TTL is the newest deadline, so
--   expired events go away with the key; a taker skips expired entries.
-- Returns: 1 kept, 0 already kept or recently used (a re-sent event),
--   2 in a claim (taken by a flow, not settled yet: a handling that was
--   cut; the caller may finish the claim).
-- Events: none.
--@include used

local id, now, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if used_has(KEYS[4], id, now) then
  return 0
end
if redis.call('HEXISTS', KEYS[3], id) == 1 then
  return 2
end
if redis.call('ZSCORE', KEYS[2], id) then
  return 0
end
local deadline = now + keep
local n = redis.call('RPUSH', KEYS[1], id .. ' ' .. deadline .. ' ' .. ARGV[4])
while n > tonumber(ARGV[5]) do
  local old = string.match(redis.call('LPOP', KEYS[1]), '^(%S+)')
  if old then
    redis.call('ZREM', KEYS[2], old)
  end
  n = n - 1
end
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('ZADD', KEYS[2], deadline, id)
if redis.call('PTTL', KEYS[2]) < keep then
  redis.call('PEXPIRE', KEYS[2], keep)
end
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 32)
if #old > 0 then
  redis.call('ZREM', KEYS[2], unpack(old))
end
return 1
