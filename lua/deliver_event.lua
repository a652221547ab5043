-- deliver_event.lua: deliver one external event to one flow: resume it
-- when it waits for the event's topic and correlation id, merging
-- {"resume_event": payload} exactly as any resume by event; otherwise,
-- by mode, keep the event in the flow's inbox for a later wait, or
-- record it as refused. An event id is decided once per flow (see mbx in
-- early_lib.lua): a second delivery of the same id returns the first
-- outcome and writes nothing.
--
-- KEYS: the flow key set 1..15 (see lib.lua), 16 the flow's inbox list,
--   17 the shard's kept-event index (see early_lib.lua).
-- ARGV: 1..8 the common head (4, expected revision, and 7, lease, unused)
--   9 corr prefix of the event's topic and correlation id
--   10 event id  11 payload JSON ('' = none)
--   12 mode: 'keep'    not waiting for it: keep it in the inbox (unless
--                      the flow is terminal), for TryResumeExternal
--            'resume'  not waiting for it: record it as refused, for a
--                      claimed event of the mailbox (mailbox.go)
--   13 retention in ms (mode keep)  14 inbox cap (mode keep)
-- Returns: {flow hash, 'used'} when the event resumed the flow now or
--   before; {{}, outcome} otherwise, outcome 'kept' (in the inbox),
--   'refused' (recorded; never applied), 'none' (no such flow, or a
--   terminal one in mode keep). An event that resumed the flow before
--   answers {flow hash, 'used'} and applies nothing.
-- Errors (mode keep; mode resume refuses the event instead):
--   CANCELPENDING <status> (waiting for it but cancel-requested),
--   TOOLARGE <size> (the merged state would be too large).
-- Events: resumed, when it resumes.

local cp, id, payload, mode = ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local f = load_flow()
if f == nil then
  if mode == 'resume' then
    return {{}, 'refused'} -- nothing can apply it: back to the mailbox
  end
  return {{}, 'none'}
end
local seen = mbx_get(id)
if seen == 'u' then
  -- A re-sent event that already resumed the flow (a reply lost, a bridge
  -- message handled again): answer as the first run did, apply nothing.
  return reply('used')
elseif seen == 'r' then
  return {{}, 'refused'}
end
if f.status == 'waiting' and f.corr == cp .. ID then
  local e = nil
  if f.cancel == '1' then
    e = err('CANCELPENDING', f.status)
  else
    e = resume_with(f, id, payload)
  end
  if e == nil then
    return reply('used')
  end
  if mode ~= 'resume' then
    return e
  end
  mbx_put(id, 'r')
  return {{}, 'refused'}
end
if mode == 'resume' then
  mbx_put(id, 'r')
  return {{}, 'refused'}
end
if TERMINAL[f.status] then
  return {{}, 'none'}
end
if redis.call('ZSCORE', KEYS[K_KEPT], id) then
  return {{}, 'kept'} -- a re-sent event, already kept
end
local deadline = tonumber(NOW_MS) + tonumber(ARGV[13])
local n = redis.call('RPUSH', KEYS[K_INBOX], id .. ' ' .. deadline .. ' ' .. #cp .. ' ' .. cp .. payload)
while n > tonumber(ARGV[14]) do
  local old = parse_inbox(redis.call('LPOP', KEYS[K_INBOX]))
  if old then
    redis.call('ZREM', KEYS[K_KEPT], old)
  end
  n = n - 1
end
redis.call('PEXPIRE', KEYS[K_INBOX], ARGV[13])
kept_add(id, deadline)
return {{}, 'kept'}
