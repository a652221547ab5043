-- page_after.lua: read up to N entries of one index strictly after a
-- list cursor (score, member), in O(log n + N) (include/after.lua).
-- Writes nothing.
--
-- KEYS: 1 the index (a zset).
-- ARGV: 1 cursor score  2 cursor member  3 N  4 'asc' or 'desc'
--   (asc: by score then member; desc: the reverse).
-- Returns: {member, score, member, score, ...}.
--@include after

local key, n = KEYS[1], tonumber(ARGV[3])
local range, lo = rank_after(key, ARGV[1], ARGV[2], ARGV[4] == 'desc')
return redis.call(range, key, lo, lo + n - 1, 'WITHSCORES')
