-- events.lua: the audit log and the revision.
--
-- The log is a list, newest entry at the head. An entry does not store
-- its id: the flow's 'seq' is the newest entry's id and ids fall by one
-- towards the tail (trimming drops the oldest only). The log keeps at
-- most c.event_cap entries and c.event_bytes bytes (0 = no bound), but
-- always the newest entry; the flow's field 'eb' is the log's size in
-- bytes (counted once, see LOG_RECOUNT, for a flow that has none).
--
-- An entry is announced on the shard's watch channel as
-- '<flow id> <event id> <entry>' while someone watches the shard: Watch
-- keeps the key '<base>:watched' alive for as long as it listens, so a
-- mutation nobody watches publishes nothing (and replicates no message).
--@include prelude
--@include errors
--@include context
--@include calls
--@include state

-- entry_of renders an audit entry in its compact form, a JSON array
-- with no key names: [kind, rev, at, payload] or, for a mutation made
-- under a lease, [kind, rev, at, payload, lease]. kind_json is a JSON
-- string, rev and at (unix ms) numbers as text, payload raw JSON, lease
-- a token ('' = none). Flows written before kept the object form
-- {"kind":…,"rev":…,"at":…,"lease":…,"payload":…}; readers take both
-- (decode.go decodeEvent).
local function entry_of(kind_json, rev, at, payload, lease)
  if lease ~= '' then
    return '[' .. kind_json .. ',' .. rev .. ',' .. at .. ',' .. payload .. ',"' .. lease .. '"]'
  end
  return '[' .. kind_json .. ',' .. rev .. ',' .. at .. ',' .. payload .. ']'
end

-- LOG_RECOUNT bounds the recount of a log without its size: a log
-- written before the byte bound, or while it was off, is cut to its
-- newest LOG_RECOUNT entries when its size is first needed, so no call
-- reads an unbounded list.
local LOG_RECOUNT = 1000

-- push_entries pushes entry, the newest, after the entries of staged (a
-- list, oldest first, that it takes; nil for none) with one LPUSH, trims
-- the log to its bounds and returns the log's new size in bytes (nil
-- while the log has no size and no byte bound needs one). Trimming once
-- after the push keeps what trimming after each entry would: the newest
-- entries that fit (always the newest one).
local function push_entries(c, f, staged, entry)
  local cap, budget = c.event_cap, c.event_bytes
  local eb = tonumber(f.eb)
  if eb == nil and budget > 0 then
    redis.call('LTRIM', c.events, 0, LOG_RECOUNT - 1)
    eb = 0
    for _, e in ipairs(redis.call('LRANGE', c.events, 0, -1)) do
      eb = eb + #e
    end
  end
  local n
  if staged then
    staged[#staged + 1] = entry
    n = redis.call('LPUSH', c.events, unpack(staged))
    if eb then
      for i = 1, #staged - 1 do
        eb = eb + #staged[i]
      end
    end
  else
    n = redis.call('LPUSH', c.events, entry)
  end
  if eb then
    eb = eb + #entry
  end
  while n > 1 and ((cap > 0 and n > cap) or (eb and budget > 0 and eb > budget)) do
    local old = redis.call('RPOP', c.events)
    if eb then
      eb = eb - #old
    end
    n = n - 1
  end
  if eb then
    f.eb = tostring(eb)
  end
  return f.eb
end

-- announce publishes '<flow id> <numbered>' on the shard's watch channel
-- when the shard is watched; a script asks once (c.watched), however many
-- events it appends.
local function announce(c, numbered)
  if c.watched == nil then
    c.watched = redis.call('EXISTS', c.base .. ':watched') == 1
  end
  if c.watched then
    redis.call(PUBLISH, c.base .. ':watch', c.id .. ' ' .. numbered)
  end
end

-- digits_of is how many decimal digits whole number n >= 0 has (by
-- arithmetic alone: a library's load sees no 'string' or 'math').
local function digits_of(n)
  local d = 1
  while n >= 10 do
    n = (n - n % 10) / 10
    d = d + 1
  end
  return d
end

-- COUNT_DIGITS is how many digits MAX_COUNT - 2 has (check_counts).
local COUNT_DIGITS = digits_of(MAX_COUNT - 2)

-- check_counts refuses a mutation of a flow whose revision or newest
-- event id could pass MAX_COUNT (Go's MaxRevision): Lua formats a number
-- with 14 significant digits, so a larger one would be written as
-- '1e+14' and read back as garbage. One script bumps each at most twice.
-- Returns an error reply, or nil.
local function check_counts(f)
  -- A count with fewer digits than the limit's is below it: no number
  -- to convert (a conversion costs about 0.4 µs of script time).
  if #(f.rev or '') < COUNT_DIGITS and #(f.seq or '') < COUNT_DIGITS then
    return nil
  end
  local rev, seq = tonumber(f.rev or '0') or 0, tonumber(f.seq or '0') or 0
  if rev > MAX_COUNT - 2 or seq > MAX_COUNT - 2 then
    return err(ERR.COUNTLIMIT, (f.rev or '0') .. ' ' .. (f.seq or '0'))
  end
  return nil
end

-- stage_event numbers an event at the flow's current revision and keeps
-- its entry (f.staged) for the script's next append_event or commit,
-- which pushes it ahead of its own in one LPUSH, writes the record once
-- and announces each: a script that appends several events stages all
-- but the last. Nothing is written until then.
local function stage_event(c, f, kind_json, payload)
  f.seq = tostring(tonumber(f.seq or '0') + 1)
  local staged = f.staged or {}
  staged[#staged + 1] = entry_of(kind_json, f.rev, c.now, payload, c.lease)
  f.staged = staged
end

-- append_event appends an event that does not change the revision, after
-- those staged (stage_event), with the record fields in extra (optional).
-- Returns '<event id> <entry>' of its own event.
local function append_event(c, f, kind_json, payload, extra)
  extra = extra or {}
  local seq = tonumber(f.seq or '0') + 1
  f.seq = tostring(seq)
  local entry = entry_of(kind_json, f.rev, c.now, payload, c.lease)
  local staged = f.staged
  if staged then
    f.staged = nil -- (assigning an absent key would grow f's table)
  end
  local eb = push_entries(c, f, staged, entry)
  if eb then
    extra[#extra + 1] = 'eb'
    extra[#extra + 1] = eb
  end
  extra[#extra + 1] = 'seq'
  extra[#extra + 1] = f.seq
  remember_pairs(c, f, extra)
  flush(c, f, extra)
  if staged then -- numbered up to seq - 1 (staged now ends with entry)
    for i = 1, #staged - 1 do
      announce(c, tostring(seq - #staged + i) .. ' ' .. staged[i])
    end
  end
  local numbered = f.seq .. ' ' .. entry
  announce(c, numbered)
  return numbered
end

-- commit persists one mutation of the flow record: revision + 1,
-- updated, the pending state and status, the record fields in extra
-- (optional), and its event; one HSET for all the fields. record_seq
-- makes the call memory keep the event id (write_flow answers a repeat
-- with its event). Returns what append_event does.
local function commit(c, f, kind_json, payload, extra, record_seq)
  extra = extra or {}
  f.rev, f.updated = tostring(tonumber(f.rev) + 1), c.now
  extra[#extra + 1] = 'rev'
  extra[#extra + 1] = f.rev
  extra[#extra + 1] = 'ep'
  extra[#extra + 1] = epoch_of(c)
  extra[#extra + 1] = 'updated'
  extra[#extra + 1] = c.now
  if record_seq then
    remember_pairs(c, f, extra, tostring(tonumber(f.seq or '0') + 1))
  end
  return append_event(c, f, kind_json, payload, extra)
end
