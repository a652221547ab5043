-- find_page.lua: one shard's part of a Find page (find.go): scan one
-- index from a list cursor and keep the entries whose flow matches the
-- filter, reading each flow's record fields, never its state. The scan
-- stops after ARGV 4 entries or ARGV 5 matches, whichever comes first,
-- and says where: the next call resumes after that entry. Writes nothing.
-- The caller leaves out of ARGV 6..10 what the index already implies.
--
-- KEYS: 1 the index to scan (a zset of flow ids: a controller's or an
--   attribute's by creation time, include/attrs.lua; an owner's; a
--   status's)  2 the prefix of the shard's flow hashes '<base>:flow:'.
-- ARGV: 1 cursor score ('' = from the first entry)  2 cursor member
--   3 'asc' or 'desc'  4 the most entries to scan  5 the most matches
--   6 status ('' = any)  7 controller ('' = any)  8 owner ('' = any)
--   9 attribute field '@<name>' ('' = any)  10 its value.
-- Returns: {{member, score, …} of the matches in scan order,
--   the last entry scanned: member, score ('' and '' when none),
--   1 when the scan reached the end of the index, else 0,
--   how many entries it scanned}.
--@include after

local index, flows = KEYS[1], KEYS[2]
local desc = ARGV[3] == 'desc'
local budget, want = tonumber(ARGV[4]), tonumber(ARGV[5])
local range, rank = 'ZRANGE', 0
if desc then
  range = 'ZREVRANGE'
end
if ARGV[1] ~= '' then
  range, rank = rank_after(index, ARGV[1], ARGV[2], desc)
end
-- The record fields to compare, and the values they must hold: none
-- when the index is the whole filter (every entry matches; the caller
-- drops an entry whose flow is gone).
local fields, wanted = {}, {}
for i, name in ipairs({'status', 'controller', 'owner'}) do
  if ARGV[5 + i] ~= '' then
    fields[#fields + 1] = name
    wanted[#wanted + 1] = ARGV[5 + i]
  end
end
if ARGV[9] ~= '' then
  fields[#fields + 1] = ARGV[9]
  wanted[#wanted + 1] = ARGV[10]
end

local function matches(m)
  if #fields == 0 then
    return true
  end
  local v = redis.call('HMGET', flows .. m, unpack(fields))
  for i = 1, #fields do
    if v[i] ~= wanted[i] then
      return false
    end
  end
  return true
end

local found, last_m, last_s, scanned, done = {}, '', '', 0, 0
while scanned < budget and #found < 2 * want do
  -- Read what the page still needs: exactly that when every entry
  -- matches, twice that (at least 16) when some may not; never more
  -- than 100 entries at once or than the budget left.
  local need = want - #found / 2
  if #fields > 0 then
    need = math.max(2 * need, 16)
  end
  local chunk = math.min(budget - scanned, need, 100)
  local got = redis.call(range, index, rank, rank + chunk - 1, 'WITHSCORES')
  local stop = false
  for i = 1, #got, 2 do
    local m, s = got[i], got[i + 1]
    scanned = scanned + 1
    last_m, last_s = m, s
    if matches(m) then
      found[#found + 1] = m
      found[#found + 1] = s
      if #found == 2 * want then
        stop = true
        break
      end
    end
  end
  if stop then
    break
  end
  if #got < 2 * chunk then
    done = 1
    break
  end
  rank = rank + chunk
end
return {found, last_m, last_s, done, scanned}
