-- waits.lua: a flow's wait and the index entries that point at it (the
-- timers zset, the correlation zset, the cancel set, and the joins zset
-- '<base>:joins' of parents waiting on their children, by when they began:
-- Stats counts it).
--@include prelude
--@include context

-- is_join tells whether wait (a stored wait_json, or nil) waits on
-- children: Go stores such a wait in its canonical form,
-- '{"kind":"children",...}' (WaitCondition.MarshalJSON).
local function is_join(wait)
  return wait ~= nil and string.sub(wait, 1, 18) == '{"kind":"children"'
end

-- clear_wait drops the wait and every index entry that points at it. A
-- flow in a status that waits leaves the cancel set even without a wait
-- (a cancel request written by write_flow on a waiting flow that has
-- none).
local function clear_wait(c, f)
  local has_wait = f.wait ~= nil or f.corr ~= nil
  -- The index writes come before the cancel set's: should an index key be
  -- of the wrong type (written by hand), the script fails before it has
  -- dropped the flow's cancel request.
  if has_wait then
    redis.call('ZREM', c.timers, c.id)
    if f.corr ~= nil then
      redis.call('ZREM', c.corr, f.corr)
    end
    if is_join(f.wait) then
      redis.call('ZREM', c.base .. ':joins', c.id)
    end
  end
  if f.status and STATUS[f.status].waits then
    redis.call('SREM', c.cancelwait, c.id)
  end
  if not has_wait then
    return
  end
  redis.call('HDEL', c.flow, 'wait', 'corr')
  f.wait, f.corr = nil, nil
end

-- set_wait stores a wait and indexes it: a timer by deadline timer_ms
-- ('' = not a timer), an external event by its correlation member corr
-- ('' = none).
local function set_wait(c, f, wait_json, timer_ms, corr)
  if timer_ms ~= '' then
    redis.call('ZADD', c.timers, timer_ms, c.id)
  end
  if is_join(wait_json) then
    redis.call('ZADD', c.base .. ':joins', c.now, c.id)
  end
  if corr ~= '' then
    redis.call('ZADD', c.corr, 0, corr)
    redis.call('HSET', c.flow, 'wait', wait_json, 'corr', corr)
    f.corr = corr
  else
    redis.call('HSET', c.flow, 'wait', wait_json)
  end
  f.wait = wait_json
end
