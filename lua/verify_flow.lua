-- verify_flow.lua: read, in one consistent step, a flow and everything
-- the invariant checker compares it with. Writes nothing.
--
-- KEYS: the flow key set 1..15 (see lib.lua), 16 the owner index.
-- ARGV: 1 flow id.
-- Returns: {} when the flow hash is missing, else
--   {flow hash, {score in each status index or ''}, owner score or '',
--    timer score or '', cancelwait membership (0/1),
--    correlation score of the flow's wait_corr or '', newest event or '',
--    step run ids, score in its controller's ready queue or '',
--    its lease or '', its lease expiry score or ''}.

local raw = redis.call('HGETALL', KEYS[K_FLOW])
if #raw == 0 then
  return {}
end
local f = {}
for i = 1, #raw, 2 do
  f[raw[i]] = raw[i + 1]
end
local scores = {}
for i = 4, 9 do -- the status indexes, in STATUS_KEY order
  scores[#scores + 1] = redis.call('ZSCORE', KEYS[i], ID) or ''
end
local corr = ''
if f.corr ~= nil then
  corr = redis.call('ZSCORE', KEYS[K_CORR], f.corr) or ''
end
return {
  raw, scores,
  redis.call('ZSCORE', KEYS[K_OWNER], ID) or '',
  redis.call('ZSCORE', KEYS[K_TIMERS], ID) or '',
  redis.call('SISMEMBER', KEYS[K_CANCELWAIT], ID),
  corr,
  redis.call('LINDEX', KEYS[K_EVENTS], 0) or '',
  redis.call('ZRANGE', KEYS[K_STEPS], 0, -1),
  redis.call('ZSCORE', ready_key(f), ID) or '',
  redis.call('HGET', KEYS[K_LEASES], ID) or '',
  redis.call('ZSCORE', KEYS[K_LEASEXP], ID) or '',
}
