-- retry.lua: record a failed attempt of a running flow (mode 'retry'):
-- the flow's attempts count grows by one; below the policy's maximum the
-- flow waits on a timer (the backoff), at the maximum it fails. Or reset
-- the count (mode 'reset').
--
-- KEYS: the flow key set 1..15 (see lib.lua).
-- ARGV: 1..8 the common head
--   9 mode: 'retry' or 'reset'
--   10 the attempts count the caller computed from (retry only): the
--      flow's field 'att', '0' when absent
--   11 max attempts (retry)
--   12 wait JSON of the backoff timer  13 its deadline in unix ms
--   14 payload of the waiting event  15 payload of the failed event
--   16.. the state change when the flow fails (see apply_state)
-- Returns: {flow hash (record and state, or record only), ''}; a reset
--   of a flow with no attempts returns {flow, 'unchanged'}.
-- Errors: NOTFOUND, REVISION <exp> <act>, LEASELOST, TERMINAL <status>,
--   CANCELPENDING <status>, ILLEGAL <from> (retry: the flow is not
--   running), ATTEMPTS <actual> (the count moved since the caller read
--   it; nothing written), TOOLARGE <size>.
-- Events: waiting (a backoff) or failed (the last attempt); a reset
--   appends attempts_reset.

local f = load_flow()
if f == nil then
  return err('NOTFOUND')
end
local e = check_revision(f) or check_lease(f)
if e then
  return e
end
local att = tonumber(f.att or '0')
if ARGV[9] == 'reset' then
  e = check_mutable(f)
  if e then
    return e
  end
  if att == 0 then
    return reply('unchanged')
  end
  redis.call('HDEL', KEYS[K_FLOW], 'att')
  f.att = nil
  commit(f, '"attempts_reset"', '{"attempts":' .. att .. '}')
  return reply()
end
if att ~= tonumber(ARGV[10]) then
  return err('ATTEMPTS', att)
end
att = att + 1
f.att = tostring(att)
if att >= tonumber(ARGV[11]) then
  e = check_transition(f, 'failed', 'running')
  if e then
    return e
  end
  e = apply_state(f, 16)
  if e then
    return e
  end
  clear_wait(f)
  set_status(f, 'failed')
  commit(f, '"failed"', ARGV[15], {'att', f.att})
  return reply()
end
e = check_transition(f, 'waiting', 'running')
if e then
  return e
end
set_status(f, 'waiting')
set_wait(f, ARGV[12], ARGV[13], '')
commit(f, '"waiting"', ARGV[14], {'att', f.att})
return reply()
