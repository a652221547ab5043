-- index_step.lua: put a step record back in its flow's step set (the
-- invariant checker's repair of step_unindexed), unless the flow or the
-- step went away meanwhile (a prune) or the step is indexed already.
--
-- KEYS: 1 the flow hash  2 the flow's steps zset  3 the step hash.
-- ARGV: 1 the step's run id.
-- Returns: 1 when the step was indexed, 0 when nothing changed.

if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[3]) == 0 then
  return 0
end
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[2], redis.call('ZCARD', KEYS[2]) + 1, ARGV[1])
return 1
