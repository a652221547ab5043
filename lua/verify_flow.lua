-- verify_flow.lua: read, in one consistent step, a flow and everything
-- the invariant checker compares it with. Writes nothing.
--
-- KEYS: the flow key set 1..15 (include/context.lua), 16 the owner index.
-- ARGV: 1 flow id.
-- Returns: {} when the flow hash is missing, else
--   {flow hash, {score in each status index or ''}, owner score or '',
--    timer score or '', cancelwait membership (0/1),
--    correlation score of the flow's wait_corr or '', newest event or '',
--    step run ids, score in its controller's ready queue or '',
--    its lease or '', its lease expiry score or '',
--    score in its controller's index or '',
--    {attribute name, score in its index or '', …}} (include/attrs.lua).

--@include prelude
--@include context
--@include queues
--@include attrs

local c = flow_context(KEYS, ARGV[1], nil)
local raw = redis.call('HGETALL', c.flow)
if #raw == 0 then
  return {}
end
local f = {}
for i = 1, #raw, 2 do
  f[raw[i]] = raw[i + 1]
end
local scores = {}
for i = 4, 9 do -- the status indexes, in Go's allStatuses order
  scores[#scores + 1] = redis.call('ZSCORE', KEYS[i], c.id) or ''
end
local attrs = {}
for i = 1, #raw, 2 do
  if string.byte(raw[i], 1) == ATTR_BYTE then
    local name = string.sub(raw[i], 2)
    attrs[#attrs + 1] = name
    attrs[#attrs + 1] = redis.call('ZSCORE', attr_key(c, name, raw[i + 1]), c.id) or ''
  end
end
local corr = ''
if f.corr ~= nil then
  corr = redis.call('ZSCORE', c.corr, f.corr) or ''
end
return {
  raw, scores,
  redis.call('ZSCORE', KEYS[16], c.id) or '',
  redis.call('ZSCORE', c.timers, c.id) or '',
  redis.call('SISMEMBER', c.cancelwait, c.id),
  corr,
  redis.call('LINDEX', c.events, 0) or '',
  redis.call('ZRANGE', c.steps, 0, -1),
  redis.call('ZSCORE', ready_key(c, f.controller), c.id) or '',
  redis.call('HGET', c.leases, c.id) or '',
  redis.call('ZSCORE', c.leasexp, c.id) or '',
  redis.call('ZSCORE', ctl_key(c, f.controller or ''), c.id) or '',
  attrs,
}
