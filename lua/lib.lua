-- lib.lua: helpers shared by every taskflow script.
--
-- The loader puts a generated prelude (STATUS_KEY, TERMINAL, ALLOWED: the
-- Go transition table; PUBLISH: 'SPUBLISH' on a cluster, else 'PUBLISH')
-- before this file and the script's own body after it, so each script is
-- self-contained on the server and the state machine has one source of
-- truth, in Go.
--
-- The flow hash holds the record (the fields in RECORD below, short names
-- because millions of flows repeat them) and the state: each top-level
-- key k of an object state is the field '$'..k with the value's raw JSON;
-- a state that is not an object is the field 'state' (and 'raw' = '1').
-- Scripts read the record with HMGET and never load the state, so their
-- cost does not grow with it.
--
-- The flow key set, in KEYS order (all under one hash tag, one slot):
--   1 flow hash         2 events list      3 steps zset
--   4..9 status index zsets, in the order of STATUS_KEY
--   10 timers zset      11 cancelwait set  12 correlation zset
--   13 leases hash (flow id -> '<token>|<expiry ms>|<worker as JSON>')
--   14 lease expiry zset
--   15 shard base '<prefix>:{<n>}' (not a key: names the ready queues)
--   16 owner zset (only the scripts that need it)
-- The keys built here are a flow's ready queue, KEYS[15]..':ready:'..
-- controller_id, a zset under the same hash tag (same slot): Go cannot
-- know the controller of a flow it did not read; and the shard's set of
-- controller ids with a ready queue, KEYS[15]..':controllers'. Channels (not keys):
-- '<base>:ready:<controller>' announces a flow ready to claim and
-- '<base>:watch' carries every audit entry as '<flow id> <entry>'.
--
-- The common ARGV head of mutation scripts:
--   1 flow id  2 now (unix ms)  3 call id ('' = none; see repeated)
--   4 expected revision ('' = any)  5 event cap (0 = none)
--   6 state size limit in bytes  7 lease token ('' = no lease)
--   8 reply: 'full' (record and state) or 'lean' (record only)
--
-- Refusals are redis.error_reply('<CODE> <details>'), mapped to typed
-- errors in Go: NOTFOUND, REVISION <expected> <actual>, TERMINAL <status>,
-- CANCELPENDING <status>, ILLEGAL <from>, TOOLARGE <size>, NOMATCH, EXISTS,
-- DUPSTEP, IMMUTABLE <field>, LEASELOST.

local K_FLOW, K_EVENTS, K_STEPS = 1, 2, 3
local K_TIMERS, K_CANCELWAIT, K_CORR = 10, 11, 12
local K_LEASES, K_LEASEXP, K_BASE, K_OWNER = 13, 14, 15, 16

local ID, NOW_MS, CALL = ARGV[1], ARGV[2], ARGV[3]
local EXPECTED, EVENT_CAP, STATE_LIMIT = ARGV[4], tonumber(ARGV[5] or '0'), tonumber(ARGV[6] or '0')
local LEASE, REPLY = ARGV[7] or '', ARGV[8] or 'full'

-- The record's fields: what load_flow reads and a lean reply returns.
local RECORD = {
  'controller', 'goal', 'owner', 'origin',
  'step', 'status', 'cancel', 'rev', 'created',
  'updated', 'wait', 'corr', 'raw', 'size',
  'seq', 'att', 'tp',
}

-- Call memory: a mutation re-sent after its reply was lost (go-redis
-- retries after a dropped connection or a read timeout; a caller retries
-- with WithCallID) must apply once and answer as the first run did. Each
-- call carries an id (ARGV[3]); a call that wrote remembers it in the
-- flow hash, in a ring of the newest entries ' <call id>:<event id>'
-- (the event id only when RECORD_SEQ: write_flow answers with its event):
-- field 'calls' for library calls, 'xcalls' for resume-bridge messages
-- (ids starting with '~'), so a message redelivered long after is still
-- recognised however busy the flow was meanwhile. A ring keeps at most
-- CALL_MEMORY entries and RING_BYTES bytes (always the newest entry):
-- a hash field over 64 bytes would turn the whole flow hash from a
-- listpack into a hashtable, costing every flow hundreds of bytes. Call
-- ids hold no space and no ':'.
local CALL_MEMORY, RING_BYTES = 6, 64
local RECORD_SEQ = false
local RING -- the ring as read by repeated(), false when absent

local function call_field()
  if string.byte(CALL, 1) == 126 then -- '~'
    return 'xcalls'
  end
  return 'calls'
end

-- repeated returns the event id (a string, maybe '') this call recorded
-- when it already applied to the flow, else nil. A script calls it first
-- and, on a repeat, answers as the first run did and writes nothing.
local function repeated()
  if CALL == '' then
    return nil
  end
  local field = call_field()
  RING = redis.call('HGET', KEYS[1], field)
  if not RING then
    return nil
  end
  local _, stop = string.find(RING, ' ' .. CALL .. ':', 1, true)
  if not stop then
    return nil
  end
  return string.match(RING, '^%d*', stop + 1)
end

-- remember_pairs adds (field, ring) to extra for a call that wrote: the
-- ring with this call appended and the oldest entries dropped. Once per
-- script (f.remembered).
local function remember_pairs(f, extra)
  if CALL == '' or f.remembered then
    return
  end
  f.remembered = true
  local field = call_field()
  if RING == nil then
    RING = redis.call('HGET', KEYS[1], field)
  end
  local seq = ''
  if RECORD_SEQ then
    seq = f.seq or ''
  end
  local ring = (RING or '') .. ' ' .. CALL .. ':' .. seq
  local _, count = string.gsub(ring, ' ', ' ')
  while count > 1 and (count > CALL_MEMORY or #ring > RING_BYTES) do
    local at = string.find(ring, ' ', 2, true)
    ring = string.sub(ring, at)
    count = count - 1
  end
  extra[#extra + 1] = field
  extra[#extra + 1] = ring
end

-- remember records this call in the flow hash (see remember_pairs).
local function remember(f)
  local extra = {}
  remember_pairs(f, extra)
  if #extra > 0 then
    redis.call('HSET', KEYS[1], unpack(extra))
  end
end

local function err(code, detail)
  if detail ~= nil then
    return redis.error_reply(code .. ' ' .. tostring(detail))
  end
  return redis.error_reply(code)
end

-- load_flow returns the flow's record as a table, or nil when it is
-- missing. It never reads the state.
local function load_flow()
  local vals = redis.call('HMGET', KEYS[K_FLOW], unpack(RECORD))
  if not vals[6] then -- every flow has a status
    return nil
  end
  local f = {}
  for i, name in ipairs(RECORD) do
    if vals[i] then
      f[name] = vals[i]
    end
  end
  return f
end

-- check_revision refuses a stale compare-and-set.
local function check_revision(f)
  if EXPECTED ~= '' and tonumber(EXPECTED) ~= tonumber(f.rev) then
    return err('REVISION', EXPECTED .. ' ' .. f.rev)
  end
  return nil
end

-- check_lease refuses a mutation made under a lease that expired or moved
-- to another worker (fencing); a mutation without a lease always passes.
local function check_lease(f)
  if LEASE == '' then
    return nil
  end
  local cur = redis.call('HGET', KEYS[K_LEASES], ID)
  if cur then
    local token, exp = string.match(cur, '^([^|]*)|(%d+)|')
    if token == LEASE and tonumber(exp) > tonumber(NOW_MS) then
      return nil
    end
  end
  return err('LEASELOST')
end

-- load_leased loads the flow and checks the lease: (flow, nil), or
-- (nil, error reply) when the flow is missing or the lease is not live.
local function load_leased()
  local f = load_flow()
  if f == nil then
    return nil, err('NOTFOUND')
  end
  local e = check_lease(f)
  if e then
    return nil, e
  end
  return f, nil
end

-- ready_key is the flow's ready queue: flow ids by the time they became
-- runnable, per controller, in this shard.
local function ready_key(f)
  return KEYS[K_BASE] .. ':ready:' .. (f.controller or '')
end

-- make_ready queues a running, unleased flow for its controller's workers
-- and wakes them. The shard's controllers set names the queue for Stats.
local function make_ready(f)
  redis.call('ZADD', ready_key(f), NOW_MS, ID)
  redis.call('SADD', KEYS[K_BASE] .. ':controllers', f.controller or '')
  redis.call(PUBLISH, ready_key(f), ID)
end

-- leave_running drops the flow from its ready queue and its lease.
local function leave_running(f)
  redis.call('ZREM', ready_key(f), ID)
  redis.call('HDEL', KEYS[K_LEASES], ID)
  redis.call('ZREM', KEYS[K_LEASEXP], ID)
end

-- check_mutable refuses terminal and cancel-pending flows (state updates).
local function check_mutable(f)
  if TERMINAL[f.status] then
    return err('TERMINAL', f.status)
  end
  if f.cancel == '1' then
    return err('CANCELPENDING', f.status)
  end
  return nil
end

-- check_transition applies the state machine's checks in the contract's
-- order: terminal, cancel pending, then the graph. from, when not '',
-- narrows the edge to one source (resume is waiting -> running only).
local function check_transition(f, to, from)
  if TERMINAL[f.status] then
    return err('TERMINAL', f.status)
  end
  if f.cancel == '1' and to ~= 'cancelled' then
    return err('CANCELPENDING', f.status)
  end
  if not ALLOWED[to][f.status] or (from ~= '' and from ~= f.status) then
    return err('ILLEGAL', f.status)
  end
  return nil
end

-- set_status moves the flow between status indexes; the score is the time
-- it entered the status, so pages of a status list are stable. Entering
-- running queues the flow for a worker; leaving it ends any lease.
local function set_status(f, to)
  if f.status ~= to then
    if f.status ~= nil and STATUS_KEY[f.status] then
      redis.call('ZREM', KEYS[STATUS_KEY[f.status]], ID)
    end
    if f.status == 'running' then
      leave_running(f)
    end
    redis.call('ZADD', KEYS[STATUS_KEY[to]], NOW_MS, ID)
    redis.call('HSET', KEYS[K_FLOW], 'status', to)
    f.status = to
    if to == 'running' then
      make_ready(f)
    end
  end
end

-- clear_wait drops the wait and every index entry that points at it. A
-- waiting flow leaves the cancel set even without a wait (a cancel request
-- written by write_flow on a waiting flow that has none).
local function clear_wait(f)
  local has_wait = f.wait ~= nil or f.corr ~= nil
  -- The index writes come before the cancel set's: should an index key be
  -- of the wrong type (written by hand), the script fails before it has
  -- dropped the flow's cancel request.
  if has_wait then
    redis.call('ZREM', KEYS[K_TIMERS], ID)
    if f.corr ~= nil then
      redis.call('ZREM', KEYS[K_CORR], f.corr)
    end
  end
  if f.status == 'waiting' then
    redis.call('SREM', KEYS[K_CANCELWAIT], ID)
  end
  if not has_wait then
    return
  end
  redis.call('HDEL', KEYS[K_FLOW], 'wait', 'corr')
  f.wait, f.corr = nil, nil
end

-- set_wait stores a wait and indexes it: a timer by deadline, an external
-- event by its correlation member.
local function set_wait(f, wait_json, timer_ms, corr)
  redis.call('HSET', KEYS[K_FLOW], 'wait', wait_json)
  f.wait = wait_json
  if timer_ms ~= '' then
    redis.call('ZADD', KEYS[K_TIMERS], timer_ms, ID)
  end
  if corr ~= '' then
    redis.call('ZADD', KEYS[K_CORR], 0, corr)
    redis.call('HSET', KEYS[K_FLOW], 'corr', corr)
    f.corr = corr
  end
end

-- set_fields writes record fields given as name, value, ...: an empty
-- value is not stored (an absent field reads as empty, and every byte
-- counts at millions of flows).
local function set_fields(...)
  local args = {...}
  local set, del = {}, {}
  for i = 1, #args, 2 do
    if args[i + 1] == '' then
      del[#del + 1] = args[i]
    else
      set[#set + 1] = args[i]
      set[#set + 1] = args[i + 1]
    end
  end
  if #set > 0 then
    redis.call('HSET', KEYS[K_FLOW], unpack(set))
  end
  if #del > 0 then
    redis.call('HDEL', KEYS[K_FLOW], unpack(del))
  end
end

-- flush writes, in as few HSETs as it can, the state pairs apply_state
-- left pending (ARGV[f.pending..]), the state size when it changed, and
-- the record fields in extra (name, value, ...). Pairs go in chunks of 400
-- so a large patch never overflows Lua's unpack limit; extra rides with
-- the last chunk.
local function flush(f, extra)
  if f.size_dirty then
    extra[#extra + 1] = 'size'
    extra[#extra + 1] = f.size
    f.size_dirty = nil
  end
  local i, to = f.pending or (#ARGV + 1), #ARGV
  f.pending = nil
  while i <= to do
    local last = math.min(i + 799, to)
    if last < to then
      redis.call('HSET', KEYS[K_FLOW], unpack(ARGV, i, last))
    else
      local args = {unpack(ARGV, i, last)}
      for j = 1, #extra do
        args[#args + 1] = extra[j]
      end
      redis.call('HSET', KEYS[K_FLOW], unpack(args))
      return
    end
    i = last + 1
  end
  if #extra > 0 then
    redis.call('HSET', KEYS[K_FLOW], unpack(extra))
  end
end

-- drop_object_state deletes every '$' field (a state replaced whole).
local function drop_object_state()
  local doomed = {}
  for _, k in ipairs(redis.call('HKEYS', KEYS[K_FLOW])) do
    if string.byte(k, 1) == 36 then -- '$'
      doomed[#doomed + 1] = k
      if #doomed == 400 then
        redis.call('HDEL', KEYS[K_FLOW], unpack(doomed))
        doomed = {}
      end
    end
  end
  if #doomed > 0 then
    redis.call('HDEL', KEYS[K_FLOW], unpack(doomed))
  end
end

-- apply_state changes the state as ARGV[at..] says and keeps the size; the
-- new pairs and the size are written by the next flush (or commit).
-- ARGV[at] is the mode:
--   'none'    nothing
--   'merge'   ARGV[at+1..] are '$'key/raw-JSON pairs: a shallow merge
--   'object'  the same pairs replace the whole state
--   'replace' ARGV[at+1] is a non-object JSON value that replaces the state
-- Returns an error reply when the new state would exceed STATE_LIMIT,
-- before anything is written. Its cost grows with the patch only (a whole
-- replacement also with the old state's key count).
local function apply_state(f, at)
  local mode = ARGV[at]
  if mode == 'none' then
    return nil
  end
  local raw_now = f.raw == '1'
  if mode == 'replace' then
    local raw = ARGV[at + 1]
    if #raw > STATE_LIMIT then
      return err('TOOLARGE', #raw)
    end
    if not raw_now then
      drop_object_state()
    end
    redis.call('HSET', KEYS[K_FLOW], 'state', raw, 'raw', '1', 'size', #raw)
    f.raw, f.size = '1', tostring(#raw)
    return nil
  end
  local size = tonumber(f.size or '0')
  if mode == 'object' or raw_now then
    size = 0
  end
  for i = at + 1, #ARGV, 2 do
    local k, v = ARGV[i], ARGV[i + 1]
    if mode == 'merge' and not raw_now then
      local old = redis.call('HSTRLEN', KEYS[K_FLOW], k)
      if old > 0 then
        size = size - #k - old
      end
    end
    size = size + #k + #v
  end
  if size > STATE_LIMIT then
    return err('TOOLARGE', size)
  end
  if mode == 'object' and not raw_now then
    drop_object_state()
  end
  if raw_now then
    redis.call('HDEL', KEYS[K_FLOW], 'state', 'raw')
    f.raw = nil
  end
  if #ARGV > at then
    f.pending = at + 1
  end
  f.size, f.size_dirty = tostring(size), true
  return nil
end

-- push_event pushes audit entry seq (newest at the head), keeps the
-- newest EVENT_CAP entries and announces it on the shard's watch channel
-- as '<flow id> <event id> <entry>'. kind_json is a JSON string, payload
-- raw JSON; a mutation made under a lease names the lease's token. An
-- entry does not store its id: the flow's 'seq' is the newest entry's id
-- and ids fall by one towards the tail (trimming drops the oldest only).
-- Returns '<event id> <entry>'.
local function push_event(f, seq, kind_json, payload)
  local lease = ''
  if LEASE ~= '' then
    lease = ',"lease":"' .. LEASE .. '"'
  end
  local entry = '{"kind":' .. kind_json .. ',"rev":' .. f.rev .. ',"at":' ..
    NOW_MS .. lease .. ',"payload":' .. payload .. '}'
  local n = redis.call('LPUSH', KEYS[K_EVENTS], entry)
  if EVENT_CAP > 0 and n > EVENT_CAP then
    redis.call('LTRIM', KEYS[K_EVENTS], 0, EVENT_CAP - 1)
  end
  local numbered = seq .. ' ' .. entry
  redis.call(PUBLISH, KEYS[K_BASE] .. ':watch', ID .. ' ' .. numbered)
  return numbered
end

-- append_event appends an event that does not change the revision.
local function append_event(f, kind_json, payload)
  local seq = redis.call('HINCRBY', KEYS[K_FLOW], 'seq', 1)
  f.seq = tostring(seq)
  remember(f)
  return push_event(f, seq, kind_json, payload)
end

-- commit persists one mutation of the flow record: revision + 1,
-- updated, the pending state, the record fields in extra (optional), and
-- its event; one HSET for all the fields. Returns what append_event does.
local function commit(f, kind_json, payload, extra)
  extra = extra or {}
  local seq = tonumber(f.seq or '0') + 1
  f.rev, f.updated, f.seq = tostring(tonumber(f.rev) + 1), NOW_MS, tostring(seq)
  extra[#extra + 1] = 'rev'
  extra[#extra + 1] = f.rev
  extra[#extra + 1] = 'updated'
  extra[#extra + 1] = NOW_MS
  extra[#extra + 1] = 'seq'
  extra[#extra + 1] = f.seq
  remember_pairs(f, extra)
  flush(f, extra)
  return push_event(f, seq, kind_json, payload)
end

-- reply returns the persisted flow: the whole hash (record and state), or
-- with a lean reply the record only, as field/value pairs.
local function reply(extra)
  if REPLY == 'lean' then
    local vals = redis.call('HMGET', KEYS[K_FLOW], unpack(RECORD))
    local out = {}
    for i, name in ipairs(RECORD) do
      if vals[i] then
        out[#out + 1] = name
        out[#out + 1] = vals[i]
      end
    end
    return {out, extra or ''}
  end
  return {redis.call('HGETALL', KEYS[K_FLOW]), extra or ''}
end

-- event_of returns '<event id> <entry>' for audit entry seq, or '' when
-- it was trimmed away (a repeated write_flow answers with it).
local function event_of(seq)
  local cur = tonumber(redis.call('HGET', KEYS[K_FLOW], 'seq') or '0')
  local n = tonumber(seq)
  if n == nil or n > cur then
    return ''
  end
  local e = redis.call('LINDEX', KEYS[K_EVENTS], cur - n)
  if not e then
    return ''
  end
  return seq .. ' ' .. e
end
