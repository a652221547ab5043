-- find_page.lua: one shard's part of a Find page (find.go): scan one
-- index from a list cursor and keep the entries whose flow matches the
-- filter, reading each flow's record fields, never its state. The scan
-- stops after ARGV 4 entries or ARGV 5 matches, whichever comes first,
-- and says where: the next call resumes after that entry. Writes nothing.
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
local status, controller, owner, field, value = ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local range, rank = 'ZRANGE', 0
if desc then
  range = 'ZREVRANGE'
end
if ARGV[1] ~= '' then
  range, rank = rank_after(index, ARGV[1], ARGV[2], desc)
end
local fields = {'status', 'controller', 'owner'}
if field ~= '' then
  fields[4] = field
end

local found, last_m, last_s, scanned, done = {}, '', '', 0, 0
while scanned < budget and #found < 2 * want do
  local chunk = math.min(budget - scanned, 100)
  local got = redis.call(range, index, rank, rank + chunk - 1, 'WITHSCORES')
  local stop = false
  for i = 1, #got, 2 do
    local m, s = got[i], got[i + 1]
    scanned = scanned + 1
    last_m, last_s = m, s
    local v = redis.call('HMGET', flows .. m, unpack(fields))
    if v[1] and (status == '' or v[1] == status) and (controller == '' or v[2] == controller)
      and (owner == '' or v[3] == owner) and (field == '' or v[4] == value) then
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
