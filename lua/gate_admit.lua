-- gate_admit.lua: choose the next flow of a controller's lane that every
-- one of its keys admits, and hold a slot of each key for it, in one
-- step: the highest priority level first; within a level the fair group
-- with the lowest virtual time (a group's time grows by 1/weight per
-- admission); within a group the oldest flow. A group whose head a key
-- refuses (its concurrency is full, or its rate bucket is empty) is
-- passed over for the next. Go then leases the flow in its shard
-- (claim_take.lua); if that refuses, Go gives the slots back
-- (gate_release.lua).
--
-- KEYS: 1 the gate's base '<prefix>:{gate}' (not a key: it names the
--   keys of include/gate.lua, all on that tag)
-- ARGV: 1 controller id  2 now (unix ms)  3 lease expiry (unix ms)
--   4 lease token  5 at most this many groups looked at  6 how many
--   groups to pass over first, in the order above (those an earlier call
--   of the same claim found refused)
-- Returns: {flow id, its gk field, 1 when the lane still holds flows
--   (else 0), the in-flight count of each of its keys
--   after this admission ('\n'-joined)}, or {'', retry at (unix ms when
--   a rate bucket refills, '' = when a slot frees), why ('' = the lane is
--   empty; else '<key> concurrency' or '<key> rate' of the first refusal),
--   the groups to pass over in a next call when groups were left unlooked
--   at (else 0)}.
-- Errors: none.
-- Events: none.
--@include prelude
--@include gate

local base, ctl = KEYS[1], ARGV[1]
local now, expiry, token = tonumber(ARGV[2]), ARGV[3], ARGV[4]
local budget, skip = tonumber(ARGV[5]), tonumber(ARGV[6])
local passed = skip -- groups passed over or looked at
local lv = base .. ':lv:' .. ctl
local retry, why = nil, ''

-- limit_of is gate.limit, read once per key and script.
local limits = {}
local function limit_of(k)
  local l = limits[k]
  if not l then
    l = {gate.limit(base, k)}
    limits[k] = l
  end
  return l[1], l[2], l[3], l[4], l[5]
end

-- admissible tells whether every key admits one more flow now; else why
-- not, and when a rate bucket would.
local function admissible(keys)
  for _, k in ipairs(keys) do
    local c, r, per, burst = limit_of(k)
    if c > 0 and gate.in_flight(base, k, now) >= c then
      return false, k .. ' concurrency'
    end
    if r > 0 then
      local _, at = gate.tokens(base, k, now, r, per, burst)
      if at then
        if not retry or at < retry then
          retry = at
        end
        return false, k .. ' rate'
      end
    end
  end
  return true
end

-- admit takes id off queue q of group grp in gr and holds its keys' slots.
local function admit(id, gk, keys, q, gr, grp, lvl)
  redis.call('ZREM', q, id)
  if redis.call('ZCARD', q) == 0 then
    redis.call('ZREM', gr, grp)
    redis.call('SREM', base .. ':queues', q)
    if redis.call('ZCARD', gr) == 0 then
      redis.call('ZREM', lv, lvl)
    end
  else
    local w = 1
    if grp ~= '' then
      local _
      _, _, _, _, w = limit_of(grp)
    end
    redis.call('ZINCRBY', gr, 1 / w, grp)
  end
  redis.call('HDEL', base .. ':fk', id)
  local member = id .. '|' .. token
  local counts = {}
  for i, k in ipairs(keys) do
    local held = base .. ':held:' .. k
    local c, r, per, burst = limit_of(k)
    if c == 0 then -- admissible purged the lapsed slots of a bounded key
      redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
    end
    redis.call('ZADD', held, expiry, member)
    counts[i] = tostring(redis.call('ZCARD', held))
    if r > 0 then
      local t = gate.tokens(base, k, now, r, per, burst)
      redis.call('HSET', base .. ':tb:' .. k, 't', tostring(t - 1), 'at', tostring(now))
      redis.call('PEXPIRE', base .. ':tb:' .. k, math.ceil(burst * per / r) + 1000)
    end
  end
  redis.call('ZADD', base .. ':adm', expiry, member)
  redis.call('HSET', base .. ':adk', member, table.concat(keys, '\n'))
  return table.concat(counts, '\n')
end

for _, lvl in ipairs(redis.call('ZRANGE', lv, 0, -1)) do
  local gr = gate.gr(base, lvl, ctl)
  local n = redis.call('ZCARD', gr)
  if n == 0 then
    redis.call('ZREM', lv, lvl)
  end
  -- Groups an earlier call of this claim found refused are passed over:
  -- refused groups ahead never keep the ones behind from their turn.
  local from = math.min(skip, n)
  skip = skip - from
  local groups = {}
  if from < n then
    groups = redis.call('ZRANGE', gr, from, from + budget - 1)
  end
  for _, grp in ipairs(groups) do
    budget = budget - 1
    passed = passed + 1
    local q = gate.q(base, lvl, grp, ctl)
    -- Entries that no longer match their flow (its keys, priority or
    -- controller changed, or it left the lane) are dropped, a few at a
    -- time: a lane is never read unbounded.
    for _ = 1, 8 do
      local head = redis.call('ZRANGE', q, 0, 0)[1]
      if not head then
        redis.call('ZREM', gr, grp)
        redis.call('SREM', base .. ':queues', q)
        break
      end
      local meta = redis.call('HGET', base .. ':fk', head)
      local mctl, gk = nil, nil
      if meta then
        mctl, gk = gate.fk_read(meta)
      end
      local prio, keys = 0, {}
      if gk then
        prio, keys = gate.meta(gk)
      end
      if mctl ~= ctl or tostring(prio) ~= lvl or (keys[1] or '') ~= grp then
        redis.call('ZREM', q, head)
      else
        local ok, no = admissible(keys)
        if ok then
          local counts = admit(head, gk, keys, q, gr, grp, lvl)
          local left = math.min(redis.call('ZCARD', lv), 1)
          return {head, gk, left, counts}
        end
        if why == '' then
          why = no
        end
        break
      end
    end
    if budget <= 0 then
      break
    end
  end
  if budget <= 0 then
    break
  end
end
local more = 0
if budget <= 0 then
  more = passed
end
return {'', retry and tostring(retry) or '', why, more}
