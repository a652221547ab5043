-- record.lua: the flow record. The flow hash holds the record (the
-- fields in RECORD, short names because millions of flows repeat them)
-- and the state: each top-level key k of an object state is the field
-- '$'..k with the value's raw JSON; a state that is not an object is the
-- field 'state' (and 'raw' = '1'). Scripts read the record with HMGET and
-- never load the state, so their cost does not grow with it. The
-- prelude's RECORD (Go's recordFields) lists the record's fields: what a
-- lean reply returns, in that order.
--@include prelude
--@include context

-- LOADED is what load_flow reads by default: RECORD and the fields only
-- scripts read, the call memory (calls.lua) and the audit log's size
-- (events.lua).
local LOADED = {
  'controller', 'goal', 'owner', 'origin',
  'step', 'status', 'cancel', 'rev', 'created',
  'updated', 'wait', 'corr', 'raw', 'size',
  'seq', 'att', 'tp', 'parent', 'ckey', 'kids',
  'calls', 'xcalls', 'eb', 'gk', kin = true, gkr = true,
}

-- MUTATE_FIELDS is what a mutation that moves neither status, wait,
-- queue nor controller needs (update_state, request_cancel,
-- append_event_at: the guards, the state's size, commit and the call
-- memory); reading 9 fields instead of 20 saves about 2 µs a call. A
-- script that loads it must not hand its flow to a helper reading more.
-- A list marked kin = true holds 'parent' and 'kids' (a flow's parent
-- and its count of children): set_status reads them itself otherwise.
local MUTATE_FIELDS = {
  'status', 'cancel', 'rev', 'seq', 'size', 'raw', 'eb', 'calls', 'xcalls',
}

-- TRANSITION_FIELDS is what a transition needs (run_transition.lua: the
-- guards, the state's size, the wait, the queues, commit, the call
-- memory and the relay of a flow that ends), 14 fields instead of 23; TAKE_FIELDS what a take needs of the
-- flow it leases (take.lua: runnable, whose, and its event's numbers);
-- REPEAT_FIELDS what tells a create whether its call already ran. Each
-- HMGET field costs about 0.2 µs of the script's time.
local TRANSITION_FIELDS = {
  'controller', 'status', 'cancel', 'rev', 'wait', 'corr', 'raw', 'size',
  'seq', 'calls', 'xcalls', 'eb', 'parent', 'kids', 'gk', kin = true, gkr = true,
}
local TAKE_FIELDS = {'status', 'controller', 'rev', 'seq', 'eb'}
local REPEAT_FIELDS = {'status', 'calls', 'xcalls'}

-- load_flow returns the flow's fields (LOADED, or the given list) as a
-- table, or nil when the flow is missing. It never reads the state.
local function load_flow(c, fields)
  fields = fields or LOADED
  local vals = redis.call('HMGET', c.flow, unpack(fields))
  local f = {}
  for i, name in ipairs(fields) do
    if vals[i] then
      f[name] = vals[i]
    end
  end
  if not f.status then -- every flow has a status
    return nil
  end
  f.kin, f.gkr = fields.kin, fields.gkr
  return f
end

-- pack_record renders RECORD's values (as HMGET gives them: false for an
-- absent field) as one string, in RECORD's order: '<length>:<bytes>' for
-- a value, '-' for none. One bulk string costs the client one allocation
-- where RECORD's 18 cost two each (decode.go unpackRecord reads it).
local function pack_record(vals)
  local parts = {}
  for i = 1, #RECORD do
    local v = vals[i]
    if v then
      parts[#parts + 1] = #v
      parts[#parts + 1] = ':'
      parts[#parts + 1] = v
    else
      parts[#parts + 1] = '-'
    end
  end
  return table.concat(parts)
end

-- reply returns the persisted flow and extra: {the whole hash (record
-- and state) as field/value pairs, extra}, or with a lean reply
-- {the record packed (pack_record), extra, 'record'}.
local function reply(c, extra)
  if c.reply == 'lean' then
    return {pack_record(redis.call('HMGET', c.flow, unpack(RECORD))), extra or '', 'record'}
  end
  return {redis.call('HGETALL', c.flow), extra or ''}
end
