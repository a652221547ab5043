-- used.lua: a bounded memory of ids, a zset of members by when they are
-- forgotten (unix ms), bounded in time and in count (WithResumeIDMemory).
-- Its keys: a shard's memory of used events (early.go), whose members
-- are the id of an event by correlation that resumed a flow
-- (early_settle.lua) and '<flow id> <event id>' for an event a flow used,
-- whatever its origin (include/early.lua, on the flow's shard; event ids
-- hold no space, so the two never meet); and the request ids
-- PublishResume put on the bridge's stream (publish_resume.lua).

-- used_add remembers member until now + keep (ms; keep <= 0 remembers
-- nothing): the key lives as long as its newest member, up to 32 members
-- past their time are dropped, and past cap the oldest are forgotten
-- first (bounded work per call).
local function used_add(key, member, now, keep, cap)
  if keep <= 0 then
    return
  end
  redis.call('ZADD', key, now + keep, member)
  if redis.call('PTTL', key) < keep then
    redis.call('PEXPIRE', key, keep)
  end
  local old = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, 32)
  if #old > 0 then
    redis.call('ZREM', key, unpack(old))
  end
  local over = redis.call('ZCARD', key) - cap
  if over > 0 then
    redis.call('ZREMRANGEBYRANK', key, 0, over - 1)
  end
end

-- used_has tells whether member is remembered and not past its time.
local function used_has(key, member, now)
  local until_ms = redis.call('ZSCORE', key, member)
  return until_ms ~= false and until_ms ~= nil and tonumber(until_ms) > now
end
