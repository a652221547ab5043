-- run_transition.lua: the body of transition.lua and transition_early.lua
-- (their headers give the arguments), as a function of the context so
-- the two share it: after_wait, when given, runs once a wait on an
-- external event is stored (transition_early: take a kept event).
--@include prelude
--@include errors
--@include context
--@include record
--@include calls
--@include guards
--@include state
--@include queues
--@include waits
--@include events
--@include take
--@include children

-- with_next is the transition's reply: reply(c), and when the call asked
-- for a next flow (token not ''), that flow's record and id (t, the
-- take's context, nil when none was ready).
local function with_next(c, token, t)
  local r = reply(c)
  if token == '' then
    return r
  end
  r[2], r[3] = r[2] or '', r[3] or 'full'
  if t then
    r[4], r[5] = reply(t)[1], t.id
  end
  return r
end

local function run_transition(c, after_wait)
  local argv = c.argv
  local f = load_flow(c, TRANSITION_FIELDS)
  if repeated(c, f) then
    local t
    if argv[18] ~= '' then
      t = remembered_take(c, argv[18])
    end
    return with_next(c, argv[18], t)
  end
  local to, kind, payload = argv[10], argv[11], argv[12]
  local guard = argv[16]
  if guard ~= '' then
    if f == nil or not STATUS[f.status].waits then
      if guard == 'timer' and redis.call('ZREM', c.timers, c.id) == 1 then
        return err(ERR.STALE) -- the entry named no waiting flow: dropped
      end
      return err(ERR.NOMATCH)
    end
    if guard == 'timer' then
      local due = redis.call('ZSCORE', c.timers, c.id)
      if not due or tonumber(due) > tonumber(c.now) then
        return err(ERR.NOMATCH)
      end
      local ok, w = pcall(cjson.decode, f.wait or '')
      if ok and type(w) == 'table' and w.kind == 'children' and f.cancel ~= '1' then
        -- A children wait's deadline: the parent resumes with what its
        -- children gave (children.lua join_resume).
        local e = check_counts(f) or join_resume(c, f, 'timeout')
        if e then
          return e
        end
        return reply(c)
      end
      if not ok or type(w) ~= 'table' or (w.kind ~= 'timer' and w.kind ~= 'children') then
        -- A timer entry whose wait is not a timer (written by hand?):
        -- drop the entry so it is reported once, and leave the flow be.
        redis.call('ZREM', c.timers, c.id)
        return err(ERR.BADWAIT)
      end
      if f.cancel == '1' then
        to, kind, payload = S_CANCELLED, '"cancelled"', '{}'
      end
    elseif f.corr ~= string.sub(guard, 6) then
      return err(ERR.NOMATCH)
    end
  end
  if f == nil then
    return err(ERR.NOTFOUND)
  end
  local e = check_revision(c, f) or check_lease(c) or check_transition(f, to, argv[17]) or check_counts(f)
  if e then
    return e
  end
  e = apply_state(c, f, 21)
  if e then
    return e
  end
  clear_wait(c, f)
  set_status(c, f, to)
  if STATUS[to].waits then
    set_wait(c, f, argv[13], argv[14], argv[15])
  end
  commit(c, f, kind, payload)
  if after_wait and f.corr ~= nil then
    after_wait(f)
  end
  if to == S_WAITING and is_join(f.wait) then
    -- A join its children already met resumes the parent at once.
    local why = join_why(c, f)
    if why then
      e = join_resume(c, f, why)
      if e then
        return e
      end
    end
  end
  local t
  if argv[18] ~= '' and c.lease ~= '' then
    t = take_head(c, f.controller, argv[18], argv[19], argv[20])
  end
  return with_next(c, argv[18], t)
end
