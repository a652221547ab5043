-- retry.lua: record a failed attempt of a running flow (mode 'retry'):
-- the flow's attempts count grows by one; below the policy's maximum the
-- flow waits on a timer (the backoff), at the maximum it fails. Or reset
-- the count (mode 'reset'). A call re-sent after its reply was lost
-- answers as the first run did (include/calls.lua).
--
-- KEYS: the flow key set 1..15 (include/context.lua).
-- ARGV: 1..9 the common head (include/context.lua)
--   10 mode: 'retry' or 'reset'
--   11 the attempts count the caller computed from (retry only): the
--      flow's field 'att', '0' when absent
--   12 max attempts (retry)
--   13 wait JSON of the backoff timer  14 its deadline in unix ms
--   15 payload of the waiting event  16 payload of the failed event
--   17.. the state change when the flow fails (include/state.lua)
-- Returns: {flow hash (record and state, or record only), ''}; a reset
--   of a flow with no attempts returns {flow, 'unchanged'}.
-- Errors: NOTFOUND, REVISION <exp> <act>, LEASELOST, TERMINAL <status>,
--   CANCELPENDING <status>, ILLEGAL <from> (retry: the flow is not
--   running), ATTEMPTS <actual> (the count moved since the caller read
--   it; nothing written), TOOLARGE <size>.
--   COUNTLIMIT <rev> <seq> (the revision or event id could pass
--   MAX_COUNT, Go's MaxRevision: include/events.lua; nothing written).
-- Events: waiting (a backoff) or failed (the last attempt); a reset
--   appends attempts_reset.
--@include prelude
--@include errors
--@include context
--@include record
--@include guards
--@include state
--@include queues
--@include waits
--@include events

local c = mutation_context(KEYS, ARGV)
local f, e, seen = load_checked(c)
if seen or e then
  return e or reply(c)
end
local att = tonumber(f.att or '0')
if ARGV[10] == 'reset' then
  e = check_mutable(f)
  if e then
    return e
  end
  if att == 0 then
    return reply(c, 'unchanged')
  end
  redis.call('HDEL', c.flow, 'att')
  f.att = nil
  commit(c, f, '"attempts_reset"', '{"attempts":' .. att .. '}')
  return reply(c)
end
if att ~= tonumber(ARGV[11]) then
  return err(ERR.ATTEMPTS, att)
end
att = att + 1
f.att = tostring(att)
if att >= tonumber(ARGV[12]) then
  e = check_transition(f, S_FAILED, S_RUNNING) or apply_state(c, f, 17)
  if e then
    return e
  end
  clear_wait(c, f)
  set_status(c, f, S_FAILED)
  commit(c, f, '"failed"', ARGV[16], {'att', f.att})
  return reply(c)
end
e = check_transition(f, S_WAITING, S_RUNNING)
if e then
  return e
end
set_status(c, f, S_WAITING)
set_wait(c, f, ARGV[13], ARGV[14], '')
commit(c, f, '"waiting"', ARGV[15], {'att', f.att})
return reply(c)
