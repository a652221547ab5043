-- early_lib.lua: helpers of the mailbox for early events (mailbox.go),
-- loaded after lib.lua by the scripts that deliver or take a kept event
-- (transition, deliver_event). Their KEYS continue the flow key set with
--   16 the flow's inbox list (events addressed to this flow id)
--   17 the shard's kept-event index zset (event id by deadline)
--
-- A kept event of a flow's inbox is one list entry, oldest first:
--   '<event id> <deadline ms> <n> <corr prefix, n bytes><payload JSON, or nothing>'
-- (the corr prefix is the topic and correlation id, as in the correlation
-- index). The flow hash records the event ids delivered to it: field
-- 'mbx' the last MBX_CAP it used (' <id>=u'), field 'mbr' the last
-- MBX_CAP it refused (' <id>=r': never applied, and never will be), in
-- separate fields so that refusals cannot push out the record of an event
-- used. A delivery sent twice (a re-sent bridge message, a claim the tick
-- re-drives while its first sender is slow) so decides the same way twice
-- and an event is applied at most once.

local K_INBOX, K_KEPT = 16, 17
local MBX_CAP = 16

-- mbx_get returns 'u' or 'r' when event id was delivered to the flow.
local function mbx_get(id)
  local vals = redis.call('HMGET', KEYS[K_FLOW], 'mbx', 'mbr')
  for _, m in ipairs({vals[1] or '', vals[2] or ''}) do
    local _, last = string.find(m, ' ' .. id .. '=', 1, true)
    if last ~= nil then
      return string.sub(m, last + 1, last + 1)
    end
  end
  return nil
end

-- mbx_put records the outcome v ('u' or 'r') of event id, keeping the
-- newest MBX_CAP records of each outcome.
local function mbx_put(id, v)
  local field = 'mbx'
  if v == 'r' then
    field = 'mbr'
  end
  local m = (redis.call('HGET', KEYS[K_FLOW], field) or '') .. ' ' .. id .. '=' .. v
  local _, n = string.gsub(m, ' ', ' ')
  while n > MBX_CAP do
    m = string.sub(m, (string.find(m, ' ', 2, true)))
    n = n - 1
  end
  redis.call('HSET', KEYS[K_FLOW], field, m)
end

-- kept_add indexes a kept event by deadline (for counting), keeps the
-- index's TTL at least as long as the event's, and drops up to 32
-- entries of events that expired (bounded work; their lists go by TTL).
local function kept_add(id, deadline)
  local key = KEYS[K_KEPT]
  redis.call('ZADD', key, deadline, id)
  local left = tonumber(deadline) - tonumber(NOW_MS)
  if redis.call('PTTL', key) < left then
    redis.call('PEXPIRE', key, left)
  end
  local old = redis.call('ZRANGEBYSCORE', key, '-inf', NOW_MS, 'LIMIT', 0, 32)
  if #old > 0 then
    redis.call('ZREM', key, unpack(old))
  end
end

-- merge_event sets the state key resume_event to payload (raw JSON), a
-- shallow merge as apply_state does, checking the size first: an error
-- reply, before anything is written, when the state would grow too large.
local function merge_event(f, payload)
  local k = '$resume_event'
  local raw_now = f.raw == '1'
  local size = 0
  if not raw_now then
    size = tonumber(f.size or '0')
    local old = redis.call('HSTRLEN', KEYS[K_FLOW], k)
    if old > 0 then
      size = size - #k - old
    end
  end
  size = size + #k + #payload
  if size > STATE_LIMIT then
    return err('TOOLARGE', size)
  end
  if raw_now then
    redis.call('HDEL', KEYS[K_FLOW], 'state', 'raw')
    f.raw = nil
  end
  redis.call('HSET', KEYS[K_FLOW], k, payload)
  f.size, f.size_dirty = tostring(size), true
  return nil
end

-- resume_with resumes a waiting flow with event id exactly as a late
-- event does: {"resume_event": payload} merged (when payload is not ''),
-- the wait cleared, status running, a resumed event; and records the
-- event as used. Returns an error reply (nothing written) when the state
-- would grow too large.
local function resume_with(f, id, payload)
  if payload ~= '' then
    local e = merge_event(f, payload)
    if e then
      return e
    end
  end
  local patch = 'null'
  if payload ~= '' then
    patch = '{"resume_event":' .. payload .. '}'
  end
  LEASE = '' -- the resume is the event's, not the caller's lease's
  clear_wait(f)
  set_status(f, 'running')
  commit(f, '"resumed"', '{"state_patch":' .. patch .. '}')
  mbx_put(id, 'u')
  return nil
end

-- parse_inbox splits an inbox entry: id, deadline, corr prefix, payload.
local function parse_inbox(entry)
  local id, dl, n, rest = string.match(entry, '^(%S+) (%d+) (%d+) (.*)$')
  if id == nil then
    return nil
  end
  n = tonumber(n)
  return id, tonumber(dl), string.sub(rest, 1, n), string.sub(rest, n + 1)
end

-- take_inbox resumes a flow that just started waiting on an external
-- event with the oldest unexpired event of its inbox that matches the
-- wait, if any. Entries met that expired, or were already delivered,
-- are dropped (the inbox is capped, so the work is bounded).
local function take_inbox(f)
  local cp = string.sub(f.corr, 1, #f.corr - #ID)
  for _, entry in ipairs(redis.call('LRANGE', KEYS[K_INBOX], 0, -1)) do
    local id, dl, ecp, payload = parse_inbox(entry)
    local stale = id == nil or dl <= tonumber(NOW_MS) or (ecp == cp and mbx_get(id) ~= nil)
    if stale or ecp == cp then
      if not stale and resume_with(f, id, payload) then
        return -- too large to merge: the flow waits, the event stays
      end
      redis.call('LREM', KEYS[K_INBOX], 1, entry)
      if id then
        redis.call('ZREM', KEYS[K_KEPT], id)
      end
      if not stale then
        return
      end
    end
  end
end
