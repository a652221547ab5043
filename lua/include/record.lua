-- record.lua: the flow record. The flow hash holds the record (the
-- fields in RECORD, short names because millions of flows repeat them)
-- and the state: each top-level key k of an object state is the field
-- '$'..k with the value's raw JSON; a state that is not an object is the
-- field 'state' (and 'raw' = '1'). Scripts read the record with HMGET and
-- never load the state, so their cost does not grow with it.
--@include context

-- RECORD lists the record's fields: what load_flow reads and a lean reply
-- returns.
local RECORD = {
  'controller', 'goal', 'owner', 'origin',
  'step', 'status', 'cancel', 'rev', 'created',
  'updated', 'wait', 'corr', 'raw', 'size',
  'seq', 'att', 'tp',
}
-- LOADED is RECORD and the fields only scripts read: the call memory
-- (calls.lua) and the audit log's size (events.lua).
local LOADED = {
  'controller', 'goal', 'owner', 'origin',
  'step', 'status', 'cancel', 'rev', 'created',
  'updated', 'wait', 'corr', 'raw', 'size',
  'seq', 'att', 'tp',
  'calls', 'xcalls', 'eb',
}

-- load_flow returns the flow's record as a table (with the call memory
-- and the audit log's size), or nil when it is missing. It never reads
-- the state.
local function load_flow(c)
  local vals = redis.call('HMGET', c.flow, unpack(LOADED))
  if not vals[6] then -- every flow has a status
    return nil
  end
  local f = {}
  for i, name in ipairs(LOADED) do
    if vals[i] then
      f[name] = vals[i]
    end
  end
  return f
end

-- reply returns the persisted flow and extra: the whole hash (record and
-- state), or with a lean reply the record only, as field/value pairs.
local function reply(c, extra)
  if c.reply == 'lean' then
    local vals = redis.call('HMGET', c.flow, unpack(RECORD))
    local out = {}
    for i, name in ipairs(RECORD) do
      if vals[i] then
        out[#out + 1] = name
        out[#out + 1] = vals[i]
      end
    end
    return {out, extra or ''}
  end
  return {redis.call('HGETALL', c.flow), extra or ''}
end
