-- calls.lua: the call memory. A mutation re-sent after its reply was lost
-- (go-redis retries after a dropped connection or a read timeout; a
-- caller retries with WithCallID) must apply once and answer as the
-- first run did. Each call carries an id (ARGV[3]); a call that wrote
-- remembers it in the flow hash, in a ring of the newest entries
-- ' <call id>:<event id>' (the event id only when the script asks: a
-- write_flow answers with its event): field 'calls' for library calls,
-- 'xcalls' for resume-bridge and early-event deliveries (ids starting with
-- '~'), so a message redelivered long after is still recognised however
-- busy the flow was meanwhile. A ring keeps at most CALL_MEMORY entries
-- and RING_BYTES bytes (always the newest entry): a hash field over 64
-- bytes would turn the whole flow hash from a listpack into a hashtable,
-- costing every flow hundreds of bytes. Call ids hold no space and no ':'.
--@include context

local CALL_MEMORY, RING_BYTES = 6, 64

local function call_field(call)
  if string.byte(call, 1) == 126 then -- '~'
    return 'xcalls'
  end
  return 'calls'
end

-- repeated returns the event id (a string, maybe '') this call recorded
-- when it already applied to flow f (as load_flow read it), else nil. A
-- script asks first and, on a repeat, answers as the first run did and
-- writes nothing.
local function repeated(c, f)
  if c.call == '' or f == nil then
    return nil
  end
  local ring = f[call_field(c.call)]
  if not ring then
    return nil
  end
  local _, stop = string.find(ring, ' ' .. c.call .. ':', 1, true)
  if not stop then
    return nil
  end
  return string.match(ring, '^%d*', stop + 1)
end

-- remember_pairs adds (field, ring) to extra for a call that wrote: the
-- ring with this call (and event id seq, '' for none) appended and the
-- oldest entries dropped. Once per script (f.remembered).
local function remember_pairs(c, f, extra, seq)
  if c.call == '' or f.remembered then
    return
  end
  f.remembered = true
  local field = call_field(c.call)
  local ring = (f[field] or '') .. ' ' .. c.call .. ':' .. (seq or '')
  local _, count = string.gsub(ring, ' ', ' ')
  while count > 1 and (count > CALL_MEMORY or #ring > RING_BYTES) do
    local at = string.find(ring, ' ', 2, true)
    ring = string.sub(ring, at)
    count = count - 1
  end
  f[field] = ring
  extra[#extra + 1] = field
  extra[#extra + 1] = ring
end

-- remember records this call in the flow hash (see remember_pairs).
local function remember(c, f)
  local extra = {}
  remember_pairs(c, f, extra)
  if #extra > 0 then
    redis.call('HSET', c.flow, unpack(extra))
  end
end

-- event_of returns '<event id> <entry>' for audit entry seq, or '' when
-- it was trimmed away (a repeated write_flow answers with it).
local function event_of(c, seq)
  local cur = tonumber(redis.call('HGET', c.flow, 'seq') or '0')
  local n = tonumber(seq)
  if n == nil or n > cur then
    return ''
  end
  local e = redis.call('LINDEX', c.events, cur - n)
  if not e then
    return ''
  end
  return seq .. ' ' .. e
end
