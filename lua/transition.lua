-- transition.lua: move a flow along the state machine (start, wait,
-- resume, finish, fail, cancel), with its state change and event.
--
-- KEYS: the flow key set 1..15 (see lib.lua).
-- ARGV: 1..8 the common head
--   9 target status
--   10 event kind (a JSON string)  11 event payload (JSON)
--   12 wait JSON to store (only when the target is waiting)
--   13 timer deadline in unix ms ('' = not a timer)
--   14 correlation member ('' = not an external event)
--   15 guard: ''          none
--             'timer'     the flow must be waiting on a timer that is due
--                         (its timers entry <= now); a cancel-pending flow
--                         is cancelled instead of resumed
--             'corr:<m>'  the flow must be waiting with correlation member m
--   16 required source status ('' = any the graph allows)
--   17.. the state change (see apply_state)
-- A wait on an external event may come with KEYS 16 and 17 (the flow's
-- inbox and the shard's kept-event index, see early_lib.lua) to the
-- variant of this script loaded with early_lib.lua (scripts.go): the wait
-- is then met at once by a kept event addressed to this flow that matches
-- it, in this same script (events waiting, then resumed).
-- Returns: {flow hash (record and state, or record only), ''}.
-- Errors: NOTFOUND, REVISION <exp> <act>, LEASELOST, TERMINAL <status>,
--   CANCELPENDING <status>, ILLEGAL <from>, TOOLARGE <size>,
--   NOMATCH (the guard did not hold; nothing written), STALE (a timer
--   entry of a flow that is gone or not waiting: the entry is dropped),
--   BADWAIT (a due
--   timer entry whose flow's wait is not a timer: the entry is dropped).
-- Events: the given kind (cancelled when a timer guard cancels); a wait
--   met by a kept event adds resumed.

if repeated() then
  return reply()
end
local f = load_flow()
local to, kind, payload = ARGV[9], ARGV[10], ARGV[11]
local guard = ARGV[15]
if guard ~= '' then
  if f == nil or f.status ~= 'waiting' then
    if guard == 'timer' and redis.call('ZREM', KEYS[K_TIMERS], ID) == 1 then
      return err('STALE') -- the entry named no waiting flow: dropped
    end
    return err('NOMATCH')
  end
  if guard == 'timer' then
    local due = redis.call('ZSCORE', KEYS[K_TIMERS], ID)
    if not due or tonumber(due) > tonumber(NOW_MS) then
      return err('NOMATCH')
    end
    local ok, w = pcall(cjson.decode, f.wait or '')
    if not ok or type(w) ~= 'table' or w.kind ~= 'timer' then
      -- A timer entry whose wait is not a timer (written by hand?):
      -- drop the entry so it is reported once, and leave the flow be.
      redis.call('ZREM', KEYS[K_TIMERS], ID)
      return err('BADWAIT')
    end
    if f.cancel == '1' then
      to, kind, payload = 'cancelled', '"cancelled"', '{}'
    end
  elseif f.corr ~= string.sub(guard, 6) then
    return err('NOMATCH')
  end
end
if f == nil then
  return err('NOTFOUND')
end
local e = check_revision(f) or check_lease(f) or check_transition(f, to, ARGV[16])
if e then
  return e
end
e = apply_state(f, 17)
if e then
  return e
end
clear_wait(f)
set_status(f, to)
if to == 'waiting' then
  set_wait(f, ARGV[12], ARGV[13], ARGV[14])
end
commit(f, kind, payload)
if to == 'waiting' and f.corr ~= nil and #KEYS >= 17 then
  take_inbox(f) -- early_lib.lua: only in the variant loaded with it
end
return reply()
