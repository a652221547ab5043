-- relay_drop.lua: drop a shard's relay entry once Go drove it, if it is
-- still the entry Go read: a script that left it again since (the flow
-- was made ready again meanwhile, gate.go driveQueued) moved its score,
-- and the entry stays for the next drive.
--
-- KEYS: 1 the shard's relay zset
-- ARGV: 1 the entry ('<kind> <id>')  2 its score as read (unix ms)
-- Returns: 1 when dropped, 0 when absent or left again since.
-- Errors: none.
-- Events: none.

local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not at or tonumber(at) ~= tonumber(ARGV[2]) then
  return 0
end
return redis.call('ZREM', KEYS[1], ARGV[1])
