-- early.lua: helpers of early events (early.go), for
-- the scripts that deliver or take a kept event (transition_early,
-- deliver_event). Those scripts pass two more keys of the flow's slot:
-- the flow's early-event list (events addressed to this flow id) and the
-- shard's early-event index zset (event id by deadline), and a third: the
-- shard's memory of used events (include/used.lua), passed as mem =
-- {key, keep (ms), cap} (WithResumeIDMemory).
--
-- An early event kept for a flow is one entry of its list, oldest first:
--   '<event id> <deadline ms> <n> <corr prefix, n bytes><payload JSON, or nothing>'
-- (the corr prefix is the topic and correlation id, as in the correlation
-- index). The flow hash records the event ids delivered to it: field
-- 'mbx' the last EARLY_RECORDS it used (' <id>=u<call id>', the call that
-- applied it, so that a re-send of that very call can tell its own
-- lost run from another delivery's), field 'mbr' the last EARLY_RECORDS it
-- refused (' <id>=r': never applied, and never will be), in
-- separate fields so that refusals cannot push out the record of an event
-- used. A delivery sent twice (a re-sent bridge message, a claim the tick
-- re-drives while its first sender is slow) so decides the same way twice
-- and an event is applied at most once. Past those 16 records, an event
-- the flow used is still known by the shard's memory of used events
-- ('<flow id> <event id>', for WithResumeIDMemory), so a copy handled
-- late resumes no later wait and is not kept again.
--@include prelude
--@include context
--@include state
--@include queues
--@include waits
--@include events
--@include used

local EARLY_RECORDS = 16

-- early_record_get returns 'u' or 'r' when event id was delivered to the flow,
-- and (for 'u') the id of the call that applied it.
local function early_record_get(c, id)
  local vals = redis.call('HMGET', c.flow, 'mbx', 'mbr')
  for _, m in ipairs({vals[1] or '', vals[2] or ''}) do
    local _, last = string.find(m, ' ' .. id .. '=', 1, true)
    if last ~= nil then
      return string.sub(m, last + 1, last + 1), string.match(m, '^%S*', last + 2)
    end
  end
  return nil
end

-- early_record_put records the outcome v ('u' or 'r') of event id, keeping the
-- newest EARLY_RECORDS records of each outcome; a use names this call.
local function early_record_put(c, id, v)
  local field = 'mbx'
  if v == 'r' then
    field = 'mbr'
  else
    v = v .. c.call
  end
  local m = (redis.call('HGET', c.flow, field) or '') .. ' ' .. id .. '=' .. v
  local _, n = string.gsub(m, ' ', ' ')
  while n > EARLY_RECORDS do
    m = string.sub(m, (string.find(m, ' ', 2, true)))
    n = n - 1
  end
  redis.call('HSET', c.flow, field, m)
end

-- flow_used tells whether the flow used event id within the memory of
-- used events (past its own records).
local function flow_used(c, mem, id)
  return used_has(mem.key, c.id .. ' ' .. id, tonumber(c.now))
end

-- early_index_add indexes an early event by deadline in the shard's index
-- (for counting), keeps the index's TTL at least as long as the event's,
-- and drops up to 32 entries of events that expired (bounded work; their
-- lists go by TTL).
local function early_index_add(c, index, id, deadline)
  redis.call('ZADD', index, deadline, id)
  local left = tonumber(deadline) - tonumber(c.now)
  if redis.call('PTTL', index) < left then
    redis.call('PEXPIRE', index, left)
  end
  local old = redis.call('ZRANGEBYSCORE', index, '-inf', c.now, 'LIMIT', 0, 32)
  if #old > 0 then
    redis.call('ZREM', index, unpack(old))
  end
end

-- resume_with resumes a waiting flow with event id exactly as a late
-- event does: {"resume_event": payload} merged (when payload is not ''),
-- the wait cleared, status running, a resumed event; and records the
-- event as used, in the flow and in the shard's memory mem. The resume
-- is the event's, not the caller's lease's. Returns an error reply
-- (nothing written) when the state would grow too large.
local function resume_with(c, f, id, payload, mem)
  if payload ~= '' then
    local e = merge_member(c, f, '$resume_event', payload)
    if e then
      return e
    end
  end
  local patch = 'null'
  if payload ~= '' then
    patch = '{"resume_event":' .. payload .. '}'
  end
  c.lease = ''
  clear_wait(c, f)
  set_status(c, f, S_RUNNING)
  commit(c, f, '"resumed"', '{"state_patch":' .. patch .. '}')
  early_record_put(c, id, 'u')
  used_add(mem.key, c.id .. ' ' .. id, tonumber(c.now), mem.keep, mem.cap)
  return nil
end

-- parse_early_entry splits an entry of a flow's early-event list: id,
-- deadline, corr prefix, payload.
local function parse_early_entry(entry)
  local id, dl, n, rest = string.match(entry, '^(%S+) (%d+) (%d+) (.*)$')
  if id == nil then
    return nil
  end
  n = tonumber(n)
  return id, tonumber(dl), string.sub(rest, 1, n), string.sub(rest, n + 1)
end

-- take_early resumes a flow that just started waiting on an external
-- event with the oldest unexpired early event kept for it that matches the
-- wait, if any. Entries met that expired, or were already delivered
-- (recorded by the flow, or in the memory mem of used events), are
-- dropped (the list is capped, so the work is bounded).
local function take_early(c, f, list, index, mem)
  local cp = string.sub(f.corr, 1, #f.corr - #c.id)
  for _, entry in ipairs(redis.call('LRANGE', list, 0, -1)) do
    local id, dl, ecp, payload = parse_early_entry(entry)
    local stale = id == nil or dl <= tonumber(c.now) or
      (ecp == cp and (early_record_get(c, id) ~= nil or flow_used(c, mem, id)))
    if stale or ecp == cp then
      if not stale and resume_with(c, f, id, payload, mem) then
        return -- too large to merge: the flow waits, the event stays
      end
      redis.call('LREM', list, 1, entry)
      if id then
        redis.call('ZREM', index, id)
      end
      if not stale then
        return
      end
    end
  end
end
