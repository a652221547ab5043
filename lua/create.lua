-- create.lua: create a flow (managed: status created, revision 0;
-- mirrored: created then started, revision 1) with its events.
--
-- KEYS: the flow key set 1..15 (include/context.lua), 16 the owner index.
-- ARGV: 1..9 the common head (include/context.lua; 4, expected revision,
--   is ignored)
--   10 controller_id  11 goal  12 owner_session_key  13 requester_origin
--   14 current_step  15 mirrored ('1' or '0')
--   16 payload of the created event (JSON)
--   17 idempotency fingerprint ('' = no key): the flow id was derived
--      from the key, and this hash of the input is kept as field 'idem'
--   18 W3C traceparent of the creating call ('' = none; kept as 'tp')
--   19 parent flow id ('' = none; kept as 'parent': a child, children.go)
--   20 the child's key among its parent's ('ckey')  21 what its parent's
--      end does to it ('pclose')  22 its depth, 1 for a root's child
--   23 its gate field 'gk' ('' = none: no concurrency keys, priority 0;
--      else '<priority>\n<key>...', gate.go)
--   24 the number N of search attributes, then N pairs name, value
--      (include/attrs.lua; Go checked them)
--   25 + 2N.. the initial state (include/state.lua apply_state: 'object'
--      or 'replace')
-- Returns: {flow hash (record and state, or record only), ''} (the full
--   one built from what it wrote, as HGETALL would give it), or
--   {the existing flow, 'existing'} when a flow with this id was made
--   with the same fingerprint (nothing written).
-- Errors: EXISTS (id already used), IDEMCONFLICT (the id's flow was made
--   from other input), TOOLARGE <size>.
-- Events: created (revision 0); mirrored also started (revision 1).
-- Indexes: besides the status and owner ones, its controller's and its
--   attributes' (include/attrs.lua), at its creation time.
--@include prelude
--@include errors
--@include context
--@include record
--@include calls
--@include state
--@include queues
--@include events
--@include attrs

local c = mutation_context(KEYS, ARGV)
local owner_index = KEYS[16]
-- HLEN answers for a new flow, the common case, alone: a hash has a
-- field or does not exist (a key that is not a hash is a WRONGTYPE error,
-- as HMGET's would be). Only a hash that exists is read: is this call a
-- repeat of the one that made it? A hash without 'status' (no flow the
-- library wrote) still makes the id a taken one.
if redis.call('HLEN', c.flow) > 0 then
  if repeated(c, load_flow(c, REPEAT_FIELDS)) then
    return reply(c)
  end
  if ARGV[17] == '' then
    return err(ERR.EXISTS)
  end
  if redis.call('HGET', c.flow, 'idem') == ARGV[17] then
    return reply(c, 'existing')
  end
  return err(ERR.IDEMCONFLICT)
end
-- A new flow's log is empty: its size is known (events.lua 'eb'), so the
-- first append need not count an existing one.
local f = {rev = '0', controller = ARGV[10], eb = '0', fresh = true, gkr = true}
if ARGV[23] ~= '' then
  f.gk = ARGV[23]
end
local nattrs = tonumber(ARGV[24])
local state_at = 25 + 2 * nattrs
local e = apply_state(c, f, state_at)
if e then
  return e
end
local mirrored = ARGV[15] == '1'
-- A mirrored flow passes through created within this script: its record
-- is written once, at revision 1 and status running, with the started
-- event; its created event (revision 0) is staged and pushed with it (one
-- LPUSH, one HSET); only the running index gets it (set_status from no
-- status).
local rev = '0'
if mirrored then
  rev = '1'
end
local extra = {}
local fields = {'controller', ARGV[10], 'goal', ARGV[11], 'owner', ARGV[12],
  'origin', ARGV[13], 'step', ARGV[14], 'rev', rev, 'ep', epoch_of(c), 'created', c.now,
  'updated', c.now, 'idem', ARGV[17], 'tp', ARGV[18],
  'parent', ARGV[19], 'ckey', ARGV[20], 'pclose', ARGV[21], 'depth', ARGV[22], 'gk', ARGV[23]}
for i = 1, #fields, 2 do
  if fields[i + 1] ~= '' then -- an absent field reads as empty
    extra[#extra + 1] = fields[i]
    extra[#extra + 1] = fields[i + 1]
  end
end
redis.call('ZADD', owner_index, c.now, c.id)
redis.call('ZADD', ctl_key(c, ARGV[10]), c.now, c.id)
index_attrs(c, c.now, ARGV, 25, nattrs, extra)
if mirrored then
  stage_event(c, f, '"created"', ARGV[16])
  f.rev = rev
  set_status(c, f, S_RUNNING)
  append_event(c, f, '"started"', '{}', extra)
else
  set_status(c, f, S_CREATED)
  append_event(c, f, '"created"', ARGV[16], extra)
end
if c.reply == 'lean' then
  return reply(c)
end
-- The full reply, without reading the hash back: it was empty (HLEN
-- above) and holds exactly what this script wrote, later pairs winning
-- as in HSET, in the order it wrote them: a non-object state (apply_state
-- writes 'state', 'raw', 'size' at once), then extra, every record field
-- flush wrote (the record, the attributes, and what append_event and
-- flush added to it), then an object state's '$' pairs (flush writes
-- them after the record).
local out
if ARGV[state_at] == 'replace' then
  out = {'state', ARGV[state_at + 1], 'raw', '1', 'size', f.size}
else
  out = {}
end
for i = 1, #extra do
  out[#out + 1] = extra[i]
end
if ARGV[state_at] ~= 'replace' then
  for i = state_at + 1, #ARGV do -- no unpack: a large state would pass its limit
    out[#out + 1] = ARGV[i]
  end
end
return {out, ''}
