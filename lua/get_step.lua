-- get_step.lua: find a flow's step by its step id. Writes nothing.
--
-- KEYS: 1 flow hash  2 steps zset  3 the flow's step key base
--   '<prefix>:{<n>}:step:<flow id>:' (not a key: the step hashes are the
--   base followed by a run id, under the same hash tag, same slot).
-- ARGV: 1 step id.
-- Returns: the step hash (field/value pairs), or {} when the flow has no
--   step with that id. Its cost grows with the flow's step count.
-- Errors: NOTFOUND (no such flow).
-- Events: none.
--@include errors

if redis.call('EXISTS', KEYS[1]) == 0 then
  return err(ERR.NOTFOUND)
end
for _, run in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if redis.call('HGET', KEYS[3] .. run, 'id') == ARGV[1] then
    return redis.call('HGETALL', KEYS[3] .. run)
  end
end
return {}
