-- tick_cancel.lua: the engine's tick cancels a waiting flow whose cancel
-- was requested, found in the shard's cancel set. An entry the tick
-- cannot act on (the flow is gone, not waiting, or has no cancel request)
-- is dropped from the set, so no tick meets it again.
--
-- KEYS: the flow key set 1..15 (see lib.lua).
-- ARGV: 1..8 the common head (4 and 7 unused).
-- Returns: {flow hash (record and state, or record only), ''}.
-- Errors: STALE (the entry named no flow to cancel: it was dropped).
-- Events: cancelled.

local f = load_flow()
if f == nil or f.status ~= 'waiting' or f.cancel ~= '1' then
  redis.call('SREM', KEYS[K_CANCELWAIT], ID)
  return err('STALE')
end
clear_wait(f)
redis.call('SREM', KEYS[K_CANCELWAIT], ID)
set_status(f, 'cancelled')
commit(f, '"cancelled"', '{}')
return reply()
