-- after.lua: where a list cursor (score, member) falls in an index, by
-- binary search within the entries that share its score, never by
-- skipping entries: page 10,000 of a million flows that share one
-- timestamp costs what page 2 does.

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

-- rank_after returns the range command of the listing's direction
-- ('ZRANGE' ascending by score then member, 'ZREVRANGE' the reverse) and
-- the rank, in that command's order, of the first entry of key strictly
-- after (s, x).
local function rank_after(key, s, x, desc)
  local range, lo
  if desc then
    range = 'ZREVRANGE'
    lo = redis.call('ZCOUNT', key, '(' .. s, '+inf')
  else
    range = 'ZRANGE'
    lo = redis.call('ZCOUNT', key, '-inf', '(' .. s)
  end
  local hi = lo + redis.call('ZCOUNT', key, s, s)
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
  return range, lo
end
