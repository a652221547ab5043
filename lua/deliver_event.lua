-- deliver_event.lua: deliver one external event to one flow: resume it
-- when it waits for the event's topic and correlation id, merging
-- {"resume_event": payload} exactly as any resume by event; otherwise,
-- by mode, keep the event in the flow's early-event list for a later wait, or
-- record it as refused. An event id is decided once per flow (see early_record_get
-- in include/early.lua): a second delivery of the same id returns the first
-- outcome and writes nothing.
--
-- KEYS: the flow key set 1..15 (include/context.lua), 16 the flow's
--   early-event list, 17 the shard's early-event index, 18 the shard's memory
--   of used events (include/early.lua).
-- ARGV: 1..9 the common head (include/context.lua; 4, expected
--   revision, and 7, lease, unused)
--   10 corr prefix of the event's topic and correlation id
--   11 event id (a second delivery of it is recognised by it; ARGV 3,
--      the call id, tells a re-send of this call from another call)  12 payload JSON ('' = none)
--   13 mode: 'keep'    not waiting for it: keep it in the list (unless
--                      the flow is terminal), for TryResumeExternal
--            'resume'  not waiting for it: record it as refused, for a
--                      claimed early event (early.go)
--   14 retention in ms (mode keep)  15 list cap (mode keep)
--   16 how long to remember a used event, in ms  17 the memory's cap
--      (WithResumeIDMemory): an event the flow used, past its own
--      records (field mbx), is still answered 'seen', never applied or kept
-- Returns: {flow hash, 'used'} when the event resumed the flow (in this
--   call: a re-sent run of it answers the same), {flow hash, 'seen'}
--   when another call's delivery of it did (nothing applied);
--   {{}, outcome} otherwise, outcome 'kept' (in the list), 'refused'
--   (recorded; never applied), 'none' (no such flow, or a terminal one
--   in mode keep).
-- Errors (mode keep; mode resume refuses the event instead):
--   CANCELPENDING <status> (waiting for it but cancel-requested),
--   TOOLARGE <size> (the merged state would be too large).
--   COUNTLIMIT <rev> <seq> (the revision or event id could pass
--   MAX_COUNT, Go's MaxRevision: include/events.lua; nothing written).
-- Events: resumed, when it resumes.

--@include prelude
--@include errors
--@include context
--@include record
--@include early

local c = mutation_context(KEYS, ARGV)
local list, index = KEYS[16], KEYS[17]
local cp, id, payload, mode = ARGV[10], ARGV[11], ARGV[12], ARGV[13]
local mem = {key = KEYS[18], keep = tonumber(ARGV[16]), cap = tonumber(ARGV[17])}
local f = load_flow(c)
if f == nil then
  if mode == 'resume' then
    return {{}, 'refused'} -- nothing can apply it: back to its pair's list
  end
  return {{}, 'none'}
end
local seen, by = early_record_get(c, id)
if seen == 'u' then
  -- A re-sent event that already resumed the flow (a reply lost, a bridge
  -- message handled again): answer as the first run did, apply nothing;
  -- 'seen' when another call applied it.
  if by == c.call then
    return reply(c, 'used')
  end
  return reply(c, 'seen')
elseif seen == 'r' then
  return {{}, 'refused'}
elseif flow_used(c, mem, id) then
  -- Used before, longer ago than the flow's own records reach.
  return reply(c, 'seen')
end
if STATUS[f.status].waits and f.corr == cp .. c.id then
  local e = check_counts(f)
  if e == nil and f.cancel == '1' then
    e = err(ERR.CANCELPENDING, f.status)
  elseif e == nil then
    e = resume_with(c, f, id, payload, mem)
  end
  if e == nil then
    return reply(c, 'used')
  end
  if mode ~= 'resume' then
    return e
  end
  early_record_put(c, id, 'r')
  return {{}, 'refused'}
end
if mode == 'resume' then
  early_record_put(c, id, 'r')
  return {{}, 'refused'}
end
if STATUS[f.status].terminal then
  return {{}, 'none'}
end
if redis.call('ZSCORE', index, id) then
  return {{}, 'kept'} -- a re-sent event, already kept
end
local deadline = tonumber(c.now) + tonumber(ARGV[14])
local n = redis.call('RPUSH', list, id .. ' ' .. deadline .. ' ' .. #cp .. ' ' .. cp .. payload)
while n > tonumber(ARGV[15]) do
  local old = parse_early_entry(redis.call('LPOP', list))
  if old then
    redis.call('ZREM', index, old)
  end
  n = n - 1
end
redis.call('PEXPIRE', list, ARGV[14])
early_index_add(c, index, id, deadline)
return {{}, 'kept'}
