-- gate_enqueue.lua: put a ready flow that carries concurrency keys or a
-- priority on its controller's lane in the gate (include/gate.lua), and
-- announce it. The flow's shard left a relay entry 'g <id>' when it made
-- the flow ready; Go drives it (the call that made it ready, else an
-- engine's tick) and drops it once this ran. Repeating it is harmless:
-- a flow already on its queue keeps its place, and an entry that no
-- longer matches the flow is dropped by the admission that meets it.
--
-- KEYS: 1 the queued flows' hash (fk)  2 the controller's levels
--   3 the level's groups  4 the queue  5 the set of queues (all on the
--   {gate} tag)
-- ARGV: 1 flow id  2 controller id  3 the flow's gk field  4 when it
--   became ready (unix ms)  5 its level  6 its group  7 the channel to
--   announce on
-- Returns: 1 queued, 0 already on that queue.
-- Errors: none.
-- Events: none (the flow's audit log is in its shard).
--@include prelude
--@include gate

redis.call('HSET', KEYS[1], ARGV[1], gate.fk(ARGV[2], ARGV[3]))
if redis.call('ZSCORE', KEYS[4], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
redis.call('SADD', KEYS[5], KEYS[4])
if not redis.call('ZSCORE', KEYS[3], ARGV[6]) then
  -- A group that starts queueing joins at the lowest virtual time of
  -- the others: it gets its share from now on, and no credit for the
  -- time it had nothing queued.
  local low = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')[2] or 0
  redis.call('ZADD', KEYS[3], low, ARGV[6])
end
redis.call('ZADD', KEYS[2], -tonumber(ARGV[5]), ARGV[5])
redis.call(PUBLISH, ARGV[7], ARGV[1])
return 1
