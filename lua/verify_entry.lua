-- verify_entry.lua: re-read, in one step, an index entry and the flow it
-- names: the invariant checker's re-check of an entry that looked stale
-- beside live traffic. Writes nothing.
--
-- KEYS: 1 the index key (a zset, set or hash), 2 the flow hash and 3 the
--   shard's leases hash, the last two only when the index is in the
--   flow's shard.
-- ARGV: 1 the member  2 the flow id ('' when the member names none).
-- Returns: {1 when the member is still in the index else 0,
--   the flow hash as field/value pairs ({} when missing or not given),
--   the flow's lease or ''}.

local present = 0
local typ = redis.call('TYPE', KEYS[1])['ok']
if typ == 'zset' then
  if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
    present = 1
  end
elseif typ == 'set' then
  present = redis.call('SISMEMBER', KEYS[1], ARGV[1])
elseif typ == 'hash' then
  present = redis.call('HEXISTS', KEYS[1], ARGV[1])
end
if present == 0 or not KEYS[2] then
  return {present, {}, ''}
end
return {present, redis.call('HGETALL', KEYS[2]), redis.call('HGET', KEYS[3], ARGV[2]) or ''}
