-- get_flow.lua: read a flow and its state in one consistent step.
--
-- KEYS: 1 flow hash  2 state hash.
-- ARGV: none.
-- Returns: {flow hash, state hash}; an empty flow hash when missing.

return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
