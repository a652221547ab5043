-- queues.lua: a flow's status indexes, its controller's ready queue and
-- its lease entries.
--@include prelude
--@include context

-- ready_key is a controller's ready queue in this shard: flow ids by the
-- time they became runnable (a zset under the shard's hash tag, named
-- here because Go cannot know the controller of a flow it did not read).
local function ready_key(c, controller)
  return c.base .. ':ready:' .. (controller or '')
end

-- make_ready queues a runnable, unleased flow for its controller's
-- workers and wakes them; the shard's controllers set names the queue
-- for Stats. A flow with concurrency keys or a priority (field 'gk')
-- waits in its controller's lane in the gate instead (gate.go), another
-- slot: this leaves the relay entry 'g <id>', due at once, that Go
-- drives (gate_enqueue.lua) and drops. A field list marked gkr = true
-- holds 'gk'; make_ready reads it itself otherwise.
local function make_ready(c, f)
  if not f.gkr then
    f.gk, f.gkr = redis.call('HGET', c.flow, 'gk') or nil, true
  end
  if f.gk and f.gk ~= '' then
    redis.call('ZADD', c.base .. ':relay', c.now, 'g ' .. c.id)
    redis.call('SADD', c.base .. ':controllers', f.controller or '')
    return
  end
  local q = ready_key(c, f.controller)
  redis.call('ZADD', q, c.now, c.id)
  redis.call('SADD', c.base .. ':controllers', f.controller or '')
  redis.call(PUBLISH, q, c.id)
end

-- lease_token_field is the field of the shard's leases hash that names
-- the flow leased under token: the claim memory (take.lua), which lives
-- and dies with the lease. A flow id (a UUID) never starts with 't:'.
local function lease_token_field(token)
  return 't:' .. token
end

-- drop_lease ends the flow's lease, if it has one: its entry in the
-- leases hash, its claim memory and its expiry entry. token is the
-- lease's token when the caller knows it (nil: read from the lease).
local function drop_lease(c, token)
  if not token then
    local cur = redis.call('HGET', c.leases, c.id)
    token = cur and string.match(cur, '^[^|]*')
  end
  if token then
    redis.call('HDEL', c.leases, c.id, lease_token_field(token))
  end
  redis.call('ZREM', c.leasexp, c.id)
end

-- leave_running drops the flow from its ready queue and its lease; a flow
-- whose lease the script found live (guards.lua check_lease) is on no
-- queue: claims take a flow off its queue, and only an unleased flow is
-- put back.
local function leave_running(c, f)
  if c.leased then
    drop_lease(c, c.lease)
    return
  end
  redis.call('ZREM', ready_key(c, f.controller), c.id)
  drop_lease(c, nil)
end

-- RELAY_GRACE_MS is how long a relay entry waits before an engine's
-- tick drives it (Go's relayGrace): the call that ended the flow drives
-- it at once, the tick only when that call died.
local RELAY_GRACE_MS = 10000

-- relay_end records, in the shard's relay zset ('<base>:relay', by when
-- the tick drives it), the work a flow that just ended leaves for other
-- shards: 'd <id>' its outcome to deliver to its parent (field 'parent'),
-- 'c <id>' its children to close by their policy (field 'kids'). Go's
-- relay (children.go) drives them and drops them once done, so a process
-- that dies between the two steps loses nothing. A script whose field
-- list lacks them (no 'kin' mark: record.lua) reads them here.
local function relay_end(c, f)
  if not f.kin then
    local v = redis.call('HMGET', c.flow, 'parent', 'kids')
    f.parent, f.kids, f.kin = v[1] or nil, v[2] or nil, true
  end
  if f.parent == nil and f.kids == nil then
    return
  end
  local due = tonumber(c.now) + RELAY_GRACE_MS
  if f.parent ~= nil then
    redis.call('ZADD', c.base .. ':relay', due, 'd ' .. c.id)
  end
  if f.kids ~= nil then
    redis.call('ZADD', c.base .. ':relay', due, 'c ' .. c.id)
  end
end

-- set_status moves the flow between status indexes; the score is the
-- time it entered the status, so pages of a status list are stable.
-- Entering a runnable status queues the flow for a worker; leaving it
-- ends any lease; entering a terminal one leaves its parent and children
-- their relay entries (relay_end). The status field itself is written by
-- the caller (commit, or set_fields), with the record's other fields.
local function set_status(c, f, to)
  if f.status == to then
    return
  end
  local from = f.status and STATUS[f.status]
  if from then
    redis.call('ZREM', c.keys[from.index], c.id)
    if from.runnable then
      leave_running(c, f)
    end
  end
  redis.call('ZADD', c.keys[STATUS[to].index], c.now, c.id)
  f.status, f.status_dirty = to, true
  if STATUS[to].runnable then
    make_ready(c, f)
  elseif STATUS[to].terminal then
    relay_end(c, f)
  end
end
