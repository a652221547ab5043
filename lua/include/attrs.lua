-- attrs.lua: a flow's search attributes and the indexes Find reads
-- (find.go). Attribute <name> is the field '@'..name of the flow hash
-- (record fields have no '@', state fields start with '$'); names are
-- 1..64 bytes of [a-z0-9_.-], checked by Go. The indexes, in the flow's
-- shard (built from the shard base, as the ready queues are):
--   '<base>:ctl:<controller>'     zset: every flow of the controller,
--                                 by creation time (unix ms); a flow
--                                 without a controller (InsertFlow,
--                                 UpdateAndAppend allow one) is in none
--   '<base>:attr:<name>=<value>'  zset: the flows with that attribute,
--                                 by creation time ('=' never occurs
--                                 in a name)
--@include context

local ATTR_BYTE = 64 -- '@'

local function ctl_key(c, controller)
  return c.base .. ':ctl:' .. controller
end

local function attr_key(c, name, value)
  return c.base .. ':attr:' .. name .. '=' .. value
end

-- attributes_of returns the flow's attributes as {name = value} and
-- how many there are (one HKEYS of the flow hash: its record, state
-- and attribute fields).
local function attributes_of(c)
  local names = {}
  for _, k in ipairs(redis.call('HKEYS', c.flow)) do
    if string.byte(k, 1) == ATTR_BYTE then
      names[#names + 1] = k
    end
  end
  local out = {}
  if #names > 0 then
    local vals = redis.call('HMGET', c.flow, unpack(names))
    for i, k in ipairs(names) do
      out[string.sub(k, 2)] = vals[i]
    end
  end
  return out, #names
end

-- index_attrs adds the flow (created at ms created) to the index of each
-- (name, value) pair of argv[from .. from + 2n - 1] and appends its
-- fields to extra (name, value, ...) for the caller's HSET.
local function index_attrs(c, created, argv, from, n, extra)
  for i = from, from + 2 * n - 1, 2 do
    redis.call('ZADD', attr_key(c, argv[i], argv[i + 1]), created, c.id)
    extra[#extra + 1] = '@' .. argv[i]
    extra[#extra + 1] = argv[i + 1]
  end
end

-- unindex_flow removes the flow from its controller's index and from
-- the index of each of its attributes (a flow that goes: prune).
local function unindex_flow(c, controller)
  if controller then
    redis.call('ZREM', ctl_key(c, controller), c.id)
  end
  for name, value in pairs(attributes_of(c)) do
    redis.call('ZREM', attr_key(c, name, value), c.id)
  end
end

-- reindex_attrs puts the flow (as load_flow read it) back in its
-- controller's index and its attributes' at its creation time, where
-- missing (the repair's reindex).
local function reindex_attrs(c, f)
  local created = f.created or '0'
  if f.controller then
    redis.call('ZADD', ctl_key(c, f.controller), 'NX', created, c.id)
  end
  for name, value in pairs(attributes_of(c)) do
    redis.call('ZADD', attr_key(c, name, value), 'NX', created, c.id)
  end
end
