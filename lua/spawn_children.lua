-- spawn_children.lua: register children under their parent before they
-- are created (children.go StartChildren), so the parent's join counts
-- them and its end closes them whatever happens after: a child id
-- registered twice (a retried spawn) counts once.
--
-- KEYS: the parent's flow key set 1..15 (include/context.lua).
-- ARGV: 1 parent id  2 the most children a flow may have
--   3 the deepest a child may be  4.. the child ids
-- Returns: {the children's depth (the parent's + 1), how many were new,
--   the parent's W3C traceparent ('' = none)}.
-- Errors: NOTFOUND, TERMINAL <status>, CANCELPENDING <status>,
--   TOODEEP <depth>, TOOMANYCHILDREN <count> (nothing written).
-- Events: none; the parent's revision does not change (its 'kids' count
--   does).
--@include prelude
--@include errors
--@include context
--@include children

local c = flow_context(KEYS, ARGV[1], nil)
local v = redis.call('HMGET', c.flow, 'status', 'cancel', 'depth', 'kids', 'tp')
local status, cancel = v[1], v[2]
if not status then
  return err(ERR.NOTFOUND)
end
if STATUS[status].terminal then
  return err(ERR.TERMINAL, status)
end
if cancel == '1' then
  return err(ERR.CANCELPENDING, status)
end
local depth = tonumber(v[3] or '0') + 1
if depth > tonumber(ARGV[3]) then
  return err(ERR.TOODEEP, depth)
end
local kids = kids_key(c)
local fresh = {}
for i = 4, #ARGV do
  if not redis.call('ZSCORE', kids, ARGV[i]) then
    fresh[#fresh + 1] = ARGV[i]
  end
end
local n = tonumber(v[4] or '0')
if n + #fresh > tonumber(ARGV[2]) then
  return err(ERR.TOOMANYCHILDREN, n)
end
for i, id in ipairs(fresh) do
  redis.call('ZADD', kids, n + i, id)
end
if #fresh > 0 then
  redis.call('HSET', c.flow, 'kids', n + #fresh)
end
return {depth, #fresh, v[5] or ''}
