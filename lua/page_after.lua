-- page_after.lua: read up to N entries of one index strictly after a
-- list cursor (score, member), in O(log n + N): the position is found by
-- binary search, never by skipping entries, so page 10,000 of a million
-- flows that share one timestamp costs what page 2 does. Writes nothing.
--
-- KEYS: 1 the index (a zset).
-- ARGV: 1 cursor score  2 cursor member  3 N  4 'asc' or 'desc'
--   (asc: by score then member; desc: the reverse).
-- Returns: {member, score, member, score, ...}.

local key, s, x, n = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local desc = ARGV[4] == 'desc'

-- less compares bytes, as Redis orders members (Lua's < follows locale).
local function less(a, b)
  local m = math.min(#a, #b)
  for i = 1, m do
    local p, q = string.byte(a, i), string.byte(b, i)
    if p ~= q then
      return p < q
    end
  end
  return #a < #b
end

local range, lo, hi
if desc then
  range = 'ZREVRANGE'
  lo = redis.call('ZCOUNT', key, '(' .. s, '+inf')
else
  range = 'ZRANGE'
  lo = redis.call('ZCOUNT', key, '-inf', '(' .. s)
end
hi = lo + redis.call('ZCOUNT', key, s, s)
-- Within the entries that share the cursor's score, find the first one
-- past the cursor's member.
while lo < hi do
  local mid = math.floor((lo + hi) / 2)
  local m = redis.call(range, key, mid, mid)[1]
  local past
  if desc then
    past = less(m, x)
  else
    past = less(x, m)
  end
  if past then
    hi = mid
  else
    lo = mid + 1
  end
end
return redis.call(range, key, lo, lo + n - 1, 'WITHSCORES')
