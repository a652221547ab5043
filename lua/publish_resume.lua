-- publish_resume.lua: put a resume request on the resume bridge's stream
-- once per request id: a request re-sent under the same id (go-redis
-- re-sending a call whose reply was lost, a publisher's retry, a NATS
-- bridge handing one message off twice) while its id is remembered adds
-- nothing. The bridge's own handling recognises an id after that
-- (bridge.go).
--
-- KEYS: 1 the bridge's stream  2 the request ids published (zset: id by
--   when it is forgotten; both on the {bridge} tag)
-- ARGV: 1 request id  2 now (unix ms)  3 how long an id is remembered
--   (ms)  4 cap: ids remembered (past it the oldest is forgotten)
--   5 the stream entry's body
-- Returns: 1 added, 0 a repeat (nothing written).
-- Events: none.

local id, now, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local seen = redis.call('ZSCORE', KEYS[2], id)
if seen and tonumber(seen) > now then
  return 0
end
redis.call('XADD', KEYS[1], '*', 'body', ARGV[5])
redis.call('ZADD', KEYS[2], now + keep, id)
if redis.call('PTTL', KEYS[2]) < keep then
  redis.call('PEXPIRE', KEYS[2], keep)
end
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 32)
if #old > 0 then
  redis.call('ZREM', KEYS[2], unpack(old))
end
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if over > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
end
return 1
