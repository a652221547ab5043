-- take.lua: lease the oldest flow of a controller's ready queue in this
-- shard to a worker, in the script that asked: claim.lua (a worker asks
-- for work) and run_transition.lua (a worker ending its lease is handed
-- its next flow, WithNext). The worker never reads a queue itself, so a
-- claim cannot lose a race to another worker: the head it takes is the
-- head.
--
-- A take remembers which flow it leased under the lease token, in the
-- string '<base>:leased:<token>' (the claim memory, kept for the
-- milliseconds the caller gives): the lease token is the call's identity,
-- and a call re-sent after its reply was lost is answered with the same
-- flow instead of a second one.
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

-- claim_memory is the key that remembers what the lease token's take
-- leased, in the shard of context c.
local function claim_memory(c, token)
  return c.base .. ':leased:' .. token
end

-- taken_context is the context of flow id, a flow of c's shard, as the
-- take leased it under token: a mutation of it made under that lease,
-- answering in c's reply mode, with c's bounds.
local function taken_context(c, id, token)
  local t = flow_context(flow_keys_in(c.keys, id), id, c.now)
  t.lease, t.reply = token, c.reply
  t.event_cap, t.event_bytes, t.state_limit = c.event_cap, c.event_bytes, c.state_limit
  t.watched = c.watched -- one shard: whether it is watched (events.lua)
  return t
end

-- remembered_take returns the context of the flow a call with this lease
-- token already leased, or nil when it leased none (or so long ago that
-- the claim memory forgot it).
local function remembered_take(c, token)
  local id = redis.call('GET', claim_memory(c, token))
  if not id then
    return nil
  end
  return taken_context(c, id, token)
end

-- lease_taken leases flow f (context t, a flow of c's shard) under token
-- until expiry to worker, and has the claim memory keep the pair for
-- keep_ms.
local function lease_taken(c, t, f, token, expiry, worker, keep_ms)
  redis.call('HSET', t.leases, t.id, token .. '|' .. expiry .. '|' .. worker)
  redis.call('ZADD', t.leasexp, expiry, t.id)
  redis.call('SET', claim_memory(c, token), t.id, 'PX', keep_ms)
  append_event(t, f, '"claimed"', '{"worker":' .. worker .. '}')
end

-- take_head pops controller's ready queue until it finds a flow it can
-- lease and leases it: lease token, expiry (unix ms, a string), worker
-- (a JSON string); the claim memory keeps the pair for keep_ms. Returns
-- the leased flow's context, or nil when the queue had none.
local function take_head(c, controller, token, expiry, worker, keep_ms)
  local q = ready_key(c, controller)
  for _ = 1, TAKE_TRIES do
    local head = redis.call('ZPOPMIN', q)[1]
    if not head then
      return nil
    end
    local t = taken_context(c, head, token)
    local f = load_flow(t, TAKE_FIELDS)
    if f and STATUS[f.status].runnable and f.controller == controller and check_counts(f) == nil then
      lease_taken(c, t, f, token, expiry, worker, keep_ms)
      return t
    end
  end
  return nil
end
