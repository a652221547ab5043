-- set_attributes.lua: set and remove search attributes of a flow and move
-- it between their indexes (include/attrs.lua); the status, state and
-- step do not change.
--
-- KEYS: the flow key set 1..15 (include/context.lua).
-- ARGV: 1..9 the common head (include/context.lua)
--   10 the most attributes a flow may hold
--   11 the number N of attributes to set, then N pairs name, value
--   12 + 2N.. the names of attributes to remove (Go checked every name
--   and value, and that no name is both set and removed)
-- Returns: {flow hash (record and state, or record only), ''}. A call
--   that changes nothing (every value already so, every removed name
--   absent) writes nothing: no revision, no event.
-- Errors: NOTFOUND, REVISION <exp> <act>, LEASELOST, TERMINAL <status>,
--   TOOMANYATTRS <count> (the flow would hold more than ARGV 10),
--   COUNTLIMIT <rev> <seq> (include/events.lua; nothing written).
-- Events: attributes_set {"set":{name:value,…},"removed":[name,…]}, with
--   only what changed.
--@include prelude
--@include errors
--@include context
--@include record
--@include guards
--@include events
--@include attrs

-- The flow's fields this script reads: MUTATE_FIELDS (guards, commit and
-- the call memory) and its creation time (the indexes' score).
local FIELDS = {
  'status', 'cancel', 'rev', 'seq', 'size', 'raw', 'eb', 'calls', 'xcalls', 'created',
}

local c = mutation_context(KEYS, ARGV)
local f, e, seen = load_checked(c, FIELDS)
if seen or e then
  return e or reply(c)
end
if STATUS[f.status].terminal then
  return err(ERR.TERMINAL, f.status)
end
local max, n = tonumber(ARGV[10]), tonumber(ARGV[11])
local current, count = attributes_of(c)
-- What changes, worked out before anything is written.
local set, del, set_json, del_json = {}, {}, {}, {}
for i = 12, 11 + 2 * n, 2 do
  local name, value = ARGV[i], ARGV[i + 1]
  if current[name] ~= value then
    if not current[name] then
      count = count + 1
    end
    set[#set + 1] = name
    set[#set + 1] = value
  end
end
for i = 12 + 2 * n, #ARGV do
  if current[ARGV[i]] then
    del[#del + 1] = ARGV[i]
    count = count - 1
  end
end
if count > max then
  return err(ERR.TOOMANYATTRS, count)
end
if #set == 0 and #del == 0 then
  return reply(c)
end
local fields, gone = {}, {}
for i = 1, #set, 2 do
  local name, value = set[i], set[i + 1]
  if current[name] then
    redis.call('ZREM', attr_key(c, name, current[name]), c.id)
  end
  redis.call('ZADD', attr_key(c, name, value), f.created, c.id)
  fields[#fields + 1] = '@' .. name
  fields[#fields + 1] = value
  set_json[#set_json + 1] = cjson.encode(name) .. ':' .. cjson.encode(value)
end
for _, name in ipairs(del) do
  redis.call('ZREM', attr_key(c, name, current[name]), c.id)
  gone[#gone + 1] = '@' .. name
  del_json[#del_json + 1] = cjson.encode(name)
end
if #gone > 0 then
  redis.call('HDEL', c.flow, unpack(gone))
end
local payload = '{"set":{' .. table.concat(set_json, ',') .. '},"removed":[' .. table.concat(del_json, ',') .. ']}'
commit(c, f, '"attributes_set"', payload, fields)
return reply(c)
