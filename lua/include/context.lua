-- context.lua: a script's context, the one value helpers take to reach
-- the flow's keys and the call's common arguments; no helper reads KEYS
-- or ARGV itself.
--
-- The flow key set, KEYS 1..15 of a flow script (keys.go flowKeys; one
-- hash tag, one slot):
--   1 flow hash  2 events list  3 steps zset
--   4..9 the status index zsets (the prelude's STATUS[s].index)
--   10 timers zset  11 cancelwait set  12 correlation zset
--   13 leases hash (flow id -> '<token>|<expiry ms>|<worker as JSON>')
--   14 lease expiry zset
--   15 shard base '<prefix>:{<n>}' (not a key: it names the ready queues
--      '<base>:ready:<controller>', the set of controllers with one
--      '<base>:controllers', and the channels '<base>:ready:<controller>'
--      and '<base>:watch')
-- A script that picks its flow itself (claim.lua) gets the shard's set:
-- 1..3 are then the prefixes '<base>:flow:', '<base>:events:' and
-- '<base>:steps:' (keys.go headKeys) and flow_keys_in builds a flow's.
-- KEYS from 16 are each script's own, named in its header.
--
-- The common ARGV head of a mutation (mutation_context):
--   1 flow id  2 now (unix ms)  3 call id ('' = none; calls.lua)
--   4 expected revision ('' = any)  5 event cap (0 = none)
--   6 state size limit in bytes of JSON  7 lease token ('' = no lease)
--   8 reply: 'full' (record and state) or 'lean' (record only)
--   9 audit log budget in bytes (0 = none; events.lua)
-- A mutation's own arguments start at 10.

-- flow_context is the context of a script on flow id's key set. now is
-- the time to stamp (unix ms, a string), nil for a script that stamps
-- nothing (a helper that needs it then fails loudly).
local function flow_context(keys, id, now)
  return {
    keys = keys, id = id, now = now,
    flow = keys[1], events = keys[2], steps = keys[3],
    timers = keys[10], cancelwait = keys[11], corr = keys[12],
    leases = keys[13], leasexp = keys[14], base = keys[15],
    call = '', expected = '', event_cap = 0, state_limit = 0,
    lease = '', reply = 'full', event_bytes = 0,
  }
end

-- flow_keys_in returns the flow key set of flow id, a flow of the shard
-- whose key set keys is: 1..3 are built from the shard base as keys.go's
-- flow, events and steps name them, 4..15 are the shard's own. A script
-- that picks a flow itself (a claim takes its queue's head) reaches it so.
local function flow_keys_in(keys, id)
  local base = keys[15]
  local k = {base .. ':flow:' .. id, base .. ':events:' .. id, base .. ':steps:' .. id}
  for i = 4, 15 do
    k[i] = keys[i]
  end
  return k
end

-- mutation_context is the context of a mutation: the flow key set and
-- the common ARGV head.
local function mutation_context(keys, argv)
  local c = flow_context(keys, argv[1], argv[2])
  c.argv = argv
  c.call, c.expected = argv[3], argv[4]
  c.event_cap, c.state_limit = tonumber(argv[5]), tonumber(argv[6])
  c.lease, c.reply = argv[7], argv[8]
  c.event_bytes = tonumber(argv[9])
  return c
end

-- epoch_of is the epoch a write stamps on the revision it makes (field
-- 'ep' of the flow hash): its call id, or its time when it has none.
-- With the revision it names the write, even after a failover that lost
-- writes and hands their revision numbers out again (guards.lua
-- check_revision).
local function epoch_of(c)
  if c.call ~= '' then
    return c.call
  end
  return c.now
end
