-- request_cancel.lua: set the sticky cancel intent. On a terminal or an
-- already cancel-requested flow nothing changes and the flow is returned.
--
-- KEYS: the flow key set 1..15 (see lib.lua).
-- ARGV: 1..8 the common head.
-- Returns: {flow hash, 'unchanged' or ''}.
-- Errors: NOTFOUND, REVISION <exp> <act>, LEASELOST.
-- Events: cancel_requested (only when something changed). A waiting flow
--   is also added to the cancelwait set, where the engine's tick finds it.

if repeated() then
  return reply()
end
local f = load_flow()
if f == nil then
  return err('NOTFOUND')
end
local e = check_revision(f) or check_lease(f)
if e then
  return e
end
if TERMINAL[f.status] or f.cancel == '1' then
  return reply('unchanged')
end
redis.call('HSET', KEYS[K_FLOW], 'cancel', '1')
f.cancel = '1'
if f.status == 'waiting' then
  redis.call('SADD', KEYS[K_CANCELWAIT], ID)
end
commit(f, '"cancel_requested"', '{}')
return reply()
