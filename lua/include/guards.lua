-- guards.lua: the checks a call passes before it writes, and the one
-- "load and check" step that opens most mutations.
--@include prelude
--@include errors
--@include record
--@include calls
--@include events

-- check_revision refuses a stale compare-and-set. The expected revision
-- is '<rev>' or '<rev>:<epoch>' (IfRevisionOf): the epoch, the name of
-- the write that made the revision (record.lua), must match too, so a
-- revision handed out again after a failover lost its write does not.
local function check_revision(c, f)
  if c.expected == '' then
    return nil
  end
  local rev, epoch = string.match(c.expected, '^(%d+):?(.*)$')
  if tonumber(rev) ~= tonumber(f.rev) or (epoch ~= '' and epoch ~= redis.call('HGET', c.flow, 'ep')) then
    return err(ERR.REVISION, c.expected .. ' ' .. f.rev)
  end
  return nil
end

-- check_lease refuses a mutation made under a lease that expired or moved
-- to another worker (fencing); a mutation without a lease always passes.
-- A lease it found live is marked (c.leased): a leased flow is on no
-- ready queue, so leaving running need not look there.
local function check_lease(c)
  if c.lease == '' then
    return nil
  end
  local cur = redis.call('HGET', c.leases, c.id)
  if cur then
    local token, exp = string.match(cur, '^([^|]*)|(%d+)|')
    -- Both unix ms: digit strings of one length compare as numbers do.
    if token == c.lease and (#exp > #c.now or #exp == #c.now and exp > c.now) then
      c.leased = true
      return nil
    end
  end
  return err(ERR.LEASELOST)
end

-- check_mutable refuses terminal and cancel-pending flows (state updates,
-- steps).
local function check_mutable(f)
  if STATUS[f.status].terminal then
    return err(ERR.TERMINAL, f.status)
  end
  if f.cancel == '1' then
    return err(ERR.CANCELPENDING, f.status)
  end
  return nil
end

-- check_transition applies the state machine's checks in the contract's
-- order: terminal, cancel pending, then the graph. from, when not '',
-- narrows the edge to one source (resume is waiting -> running only).
local function check_transition(f, to, from)
  if STATUS[f.status].terminal then
    return err(ERR.TERMINAL, f.status)
  end
  if f.cancel == '1' and to ~= S_CANCELLED then
    return err(ERR.CANCELPENDING, f.status)
  end
  if not ALLOWED[to][f.status] or (from ~= '' and from ~= f.status) then
    return err(ERR.ILLEGAL, f.status)
  end
  return nil
end

-- load_checked is the opening of a mutation: the flow (as load_flow
-- reads it, the given fields or all) when it exists, the call is not a repeat, and the expected
-- revision (when given) and the lease (when given) hold, and its counts
-- have room (check_counts). Returns
-- (flow, nil, false), or (nil, error reply, false), or (flow, nil, seq)
-- for a repeated call (seq: the event id it recorded, maybe ''): the
-- caller then answers as the first run did.
local function load_checked(c, fields)
  local f = load_flow(c, fields)
  if f == nil then
    return nil, err(ERR.NOTFOUND), false
  end
  local seen = repeated(c, f)
  if seen then
    return f, nil, seen
  end
  local e = check_revision(c, f) or check_lease(c) or check_counts(f)
  if e then
    return nil, e, false
  end
  return f, nil, false
end
