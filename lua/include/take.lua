-- take.lua: lease the oldest flow of a controller's ready queue in this
-- shard to a worker, in the script that asked: claim.lua (a worker asks
-- for work) and run_transition.lua (a worker ending its lease is handed
-- its next flow, WithNext). The worker never reads a queue itself, so a
-- claim cannot lose a race to another worker: the head it takes is the
-- head.
--
-- A take remembers which flow it leased under the lease token, in the
-- shard's leases hash beside the lease itself: field 't:<token>' holds
-- the flow id for as long as the lease lives (the claim memory;
-- queues.lua drop_lease deletes both). The lease token is the call's
-- identity, and a call re-sent after its reply was lost is answered with
-- the same flow instead of a second one.
--@include prelude
--@include context
--@include record
--@include queues
--@include events

-- TAKE_TRIES bounds the entries one take drops before it gives up: an
-- entry whose flow is gone, no longer runnable, now another controller's,
-- or at its count limit (check_counts: such a flow can never be leased;
-- Verify reports it). A take never reads an unbounded part of a queue.
local TAKE_TRIES = 16

-- taken_context is the context of flow id, a flow of c's shard, as the
-- take leased it under token: a mutation of it made under that lease,
-- with c's bounds, answering with the whole flow whatever c's reply mode
-- (a worker needs the state of the flow it is handed: WithoutState on
-- the call that ends a lease applies to that call's own flow).
local function taken_context(c, id, token)
  local t = flow_context(flow_keys_in(c.keys, id), id, c.now)
  t.lease = token
  t.event_cap, t.event_bytes, t.state_limit = c.event_cap, c.event_bytes, c.state_limit
  t.watched = c.watched -- one shard: whether it is watched (events.lua)
  return t
end

-- remembered_take returns the context of the flow a call with this lease
-- token already leased, or nil when it leased none (or its lease has
-- ended since).
local function remembered_take(c, token)
  local id = redis.call('HGET', c.leases, lease_token_field(token))
  if not id then
    return nil
  end
  return taken_context(c, id, token)
end

-- lease_taken leases flow f (context t, a flow of c's shard) under token
-- until expiry to worker; one HSET writes the lease and the claim
-- memory.
local function lease_taken(t, f, token, expiry, worker)
  redis.call('HSET', t.leases, t.id, token .. '|' .. expiry .. '|' .. worker, lease_token_field(token), t.id)
  redis.call('ZADD', t.leasexp, expiry, t.id)
  append_event(t, f, '"claimed"', '{"worker":' .. worker .. '}')
end

-- take_head pops controller's ready queue until it finds a flow it can
-- lease and leases it: lease token, expiry (unix ms, a string), worker
-- (a JSON string). Returns the leased flow's context, or nil when the
-- queue had none.
local function take_head(c, controller, token, expiry, worker)
  local q = ready_key(c, controller)
  for _ = 1, TAKE_TRIES do
    local head = redis.call('ZPOPMIN', q)[1]
    if not head then
      return nil
    end
    local t = taken_context(c, head, token)
    local f = load_flow(t, TAKE_FIELDS)
    if f and STATUS[f.status].runnable and f.controller == controller and check_counts(f) == nil then
      lease_taken(t, f, token, expiry, worker)
      return t
    end
  end
  return nil
end
