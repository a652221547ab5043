-- find_step.lua: read a flow's step by run id. Writes nothing.
--
-- KEYS: 1 flow hash  2 the step hash.
-- ARGV: none.
-- Returns: the step hash (field/value pairs), or {} when the flow has no
--   step with that run id.
-- Errors: NOTFOUND (no such flow).
-- Events: none.
--@include errors

if redis.call('EXISTS', KEYS[1]) == 0 then
  return err(ERR.NOTFOUND)
end
return redis.call('HGETALL', KEYS[2])
