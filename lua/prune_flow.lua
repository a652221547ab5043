-- prune_flow.lua: delete one terminal flow last updated before a cutoff,
-- with its state, events, steps and every index entry.
--
-- KEYS: the flow key set 1..16 (see lib.lua), then the flow's step
--   hashes (as many as ARGV 3 says).
-- ARGV: 1 flow id  2 cutoff (unix ms; updated_at must be below it)
--   3 number of steps the caller saw (the steps zset must still hold
--   exactly that many, so no step key is left behind)
-- Returns: 1 when pruned, 0 when the flow is gone, not terminal, too
--   recent, or gained steps meanwhile (nothing is deleted then).
-- Events: none; the flow's audit log is deleted with it.

local f = load_flow()
if f == nil or not TERMINAL[f.status] or tonumber(f.updated) >= tonumber(ARGV[2]) then
  return 0
end
if redis.call('ZCARD', KEYS[K_STEPS]) ~= tonumber(ARGV[3]) then
  return 0
end
if f.owner ~= nil then
  redis.call('ZREM', KEYS[K_OWNER], ID)
end
for _, k in pairs(STATUS_KEY) do
  redis.call('ZREM', KEYS[k], ID)
end
clear_wait(f)
leave_running(f)
for i = 17, #KEYS do
  redis.call('DEL', KEYS[i])
end
redis.call('DEL', KEYS[K_FLOW], KEYS[K_EVENTS], KEYS[K_STEPS])
return 1
