-- deliver_child.lua: hand a child's outcome to its parent, exactly once
-- (children.go relay): the outcome is kept in the parent's results,
-- counted by status, and a parent whose join it meets is resumed. A
-- second delivery of the same child (a lost reply, two engines relaying
-- at once) finds the outcome kept and writes nothing.
--
-- KEYS: the parent's flow key set 1..15 (include/context.lua).
-- ARGV: 1..9 the common head (include/context.lua; 4 and 7 unused)
--   10 child id  11 its terminal status  12 its outcome (JSON)
-- Returns: {flow hash (record and state, or record only), 'resumed'}
--   when the outcome met the parent's join; {{}, outcome} otherwise,
--   outcome 'kept' (the parent has it), 'dup' (it had it already),
--   'none' (no such parent: nothing written).
-- Errors: COUNTLIMIT <rev> <seq> (include/events.lua; the outcome is kept,
--   the parent not resumed).
-- Events: resumed, on the parent, when its join is met.
--@include prelude
--@include errors
--@include context
--@include record
--@include children

local c = mutation_context(KEYS, ARGV)
local f = load_flow(c, TRANSITION_FIELDS)
if f == nil then
  return {{}, 'none'}
end
local res = results_key(c)
if redis.call('HSETNX', res, ARGV[10], ARGV[12]) == 0 then
  return {{}, 'dup'}
end
redis.call('HINCRBY', res, '#' .. ARGV[11], 1)
local kids = kids_key(c)
if not redis.call('ZSCORE', kids, ARGV[10]) then
  -- A child its parent never registered (made by hand, or an import):
  -- counted from now on.
  local n = tonumber(f.kids or '0') + 1
  redis.call('ZADD', kids, n, ARGV[10])
  redis.call('HSET', c.flow, 'kids', n)
  f.kids = tostring(n)
end
if STATUS[f.status].waits and f.cancel ~= '1' and is_join(f.wait) then
  local why = join_why(c, f)
  if why then
    local e = check_counts(f) or join_resume(c, f, why)
    if e then
      return e
    end
    return reply(c, 'resumed')
  end
end
return {{}, 'kept'}
