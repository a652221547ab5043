-- gate.lua: what the gate scripts share (gate.go). The gate holds, on
-- one tag ('<prefix>:{gate}', named 'base' here), the ready lane of the
-- flows that carry concurrency keys or a priority, every key's limit,
-- in-flight leases and rate bucket, so an admission reads and writes
-- them in one atomic step:
--   base:limits              hash: key -> '<concurrency> <rate> <per ms>
--                            <burst> <weight>' (0 = none)
--   base:fk                  hash: queued flow id -> '<length of the
--                            controller> <controller><gk>' (gk: the flow's
--                            field, '<priority>\n<key>...'; a controller id
--                            may hold any character)
--   base:lv:<ctl>            zset: priority levels with queued flows
--                            (score -level: the highest first)
--   base:gr:<lvl>|<ctl>      zset: fair groups (a flow's first key, '' for
--                            none) with queued flows, by virtual time
--   base:q:<lvl>|<grp>|<ctl> zset: queued flow ids by when they became ready
--   base:held:<key>          zset: '<id>|<lease token>' by lease expiry ms
--   base:tb:<key>            hash: the key's rate bucket (t tokens, at ms)
--   base:adm                 zset: admissions '<id>|<token>' by expiry ms
--   base:adk                 hash: admission -> its keys ('\n'-joined)
--   base:queues              set: the q zsets that hold flows (KeyLimits)
--   base:ready:<ctl>         channel: a flow queued for ctl
--   base:freed               channel: a slot of a full key freed
-- Keys hold no '|', ' ' or newline (gate.go checks them), so the names
-- above read one way.

-- gate holds the gate's helpers, as fields of one table: one local of
-- the library's main chunk, whose locals Lua 5.1 bounds. They do not
-- call each other (the table is not in scope while it is built).
local gate = {
  -- split splits s on newlines.
  split = function(s)
    local out = {}
    for part in string.gmatch(s, '[^\n]+') do
      out[#out + 1] = part
    end
    return out
  end,

  -- meta parses a flow's gate field gk: its priority (a number) and its
  -- keys (a list; the first is its fair group).
  meta = function(gk)
    local parts = {}
    for part in string.gmatch(gk, '[^\n]+') do
      parts[#parts + 1] = part
    end
    local prio = tonumber(parts[1]) or 0
    table.remove(parts, 1)
    return prio, parts
  end,

  -- fk is the lane's record of a queued flow of controller ctl whose
  -- gate field is gk.
  fk = function(ctl, gk)
    return #ctl .. ' ' .. ctl .. gk
  end,

  -- fk_read reads a record of fk: the controller and the gate field, or
  -- nil.
  fk_read = function(v)
    local n, rest = string.match(v, '^(%d+) (.*)$')
    if not n then
      return nil
    end
    n = tonumber(n)
    return string.sub(rest, 1, n), string.sub(rest, n + 1)
  end,

  -- q is the lane queue of (level, group, controller).
  q = function(base, lvl, grp, ctl)
    return base .. ':q:' .. lvl .. '|' .. grp .. '|' .. ctl
  end,

  -- gr is the fair-group zset of (level, controller).
  gr = function(base, lvl, ctl)
    return base .. ':gr:' .. lvl .. '|' .. ctl
  end,

  -- limit returns the limit of key: concurrency, rate, per ms, burst,
  -- weight (numbers; 0 = none, weight at least 1).
  limit = function(base, key)
    local v = redis.call('HGET', base .. ':limits', key)
    if not v then
      return 0, 0, 0, 0, 1
    end
    local c, r, per, burst, w = string.match(v, '^(%d+) (%d+) (%d+) (%d+) (%d+)$')
    if not c then
      return 0, 0, 0, 0, 1
    end
    w = tonumber(w)
    if w < 1 then
      w = 1
    end
    return tonumber(c), tonumber(r), tonumber(per), tonumber(burst), w
  end,

  -- in_flight drops the key's expired leases and counts the live ones.
  in_flight = function(base, key, now)
    local held = base .. ':held:' .. key
    redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
    return redis.call('ZCARD', held)
  end,

  -- tokens returns the tokens the key's bucket holds at now (refilled at
  -- rate per per_ms, at most burst) and, when under one, the ms at which
  -- it holds one.
  tokens = function(base, key, now, rate, per, burst)
    local v = redis.call('HMGET', base .. ':tb:' .. key, 't', 'at')
    local t, at = tonumber(v[1]), tonumber(v[2])
    if not t or not at then
      t, at = burst, now
    end
    t = math.min(burst, t + (now - at) * rate / per)
    if t >= 1 then
      return t, nil
    end
    return t, now + math.ceil((1 - t) * per / rate)
  end,
}
