-- state.lua: a flow's record fields and its JSON state.
--
-- The size of the state ('size') is counted as the JSON it reads back
-- as: a value as stored, a non-object state whole; an object as its
-- members '"key":value' (the key JSON-escaped) with the commas and
-- braces, so 1 + the sum over members of (#field + #value + 3 + the
-- key's escapes), where field is '$'..key. A flow written by a version
-- that counted stored bytes only is undercounted by 3 bytes per key
-- until its state is replaced whole; merges never drift it.
--@include prelude
--@include errors
--@include context

-- set_fields writes record fields given as name, value, ...: an empty
-- value is not stored (an absent field reads as empty, and every byte
-- counts at millions of flows).
local function set_fields(c, ...)
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
    redis.call('HSET', c.flow, unpack(set))
  end
  if #del > 0 then
    redis.call('HDEL', c.flow, unpack(del))
  end
end

-- flush writes, in as few HSETs as it can, the state pairs apply_state
-- left pending (c.argv[f.pending..]), the status and the state size when
-- they changed, and the record fields in extra (name, value, ...). Pairs
-- go in chunks of 400 so a large patch never overflows Lua's unpack
-- limit; extra rides with the first chunk, ahead of it: a field new to
-- the hash goes at its end, and HMGET reads a small hash's fields by
-- scanning from its start, so record fields written before the state are
-- found without stepping over it.
local function flush(c, f, extra)
  if f.size_dirty then
    extra[#extra + 1] = 'size'
    extra[#extra + 1] = f.size
    f.size_dirty = nil
  end
  if f.status_dirty then
    extra[#extra + 1] = 'status'
    extra[#extra + 1] = f.status
    f.status_dirty = nil
  end
  local argv = c.argv or {}
  local i, to = f.pending or (#argv + 1), #argv
  f.pending = nil
  if i > to then
    if #extra > 0 then
      redis.call('HSET', c.flow, unpack(extra))
    end
    return
  end
  local last = math.min(i + 799, to)
  local args = {unpack(extra)}
  for j = i, last do
    args[#args + 1] = argv[j]
  end
  redis.call('HSET', c.flow, unpack(args))
  for from = last + 1, to, 800 do
    redis.call('HSET', c.flow, unpack(argv, from, math.min(from + 799, to)))
  end
end

-- drop_object_state deletes every '$' field (a state replaced whole).
local function drop_object_state(c)
  local doomed = {}
  for _, k in ipairs(redis.call('HKEYS', c.flow)) do
    if string.byte(k, 1) == 36 then -- '$'
      doomed[#doomed + 1] = k
      if #doomed == 400 then
        redis.call('HDEL', c.flow, unpack(doomed))
        doomed = {}
      end
    end
  end
  if #doomed > 0 then
    redis.call('HDEL', c.flow, unpack(doomed))
  end
end

-- key_escapes is how many bytes JSON-escaping adds to state field k's
-- key (k without its '$'), as Go writes it (json.go writeJSONString).
local function key_escapes(k)
  if not string.find(k, '[%z\1-\31"\\\226]') then
    return 0
  end
  local n = 0
  for i = 2, #k do
    local b = string.byte(k, i)
    if b == 34 or b == 92 or b == 9 or b == 10 or b == 13 then
      n = n + 1 -- \" \\ \t \n \r
    elseif b < 32 then
      n = n + 5 -- \u00XX
    elseif b == 226 and string.byte(k, i + 1) == 128 then
      local b3 = string.byte(k, i + 2)
      if b3 == 168 or b3 == 169 then
        n = n + 3 -- U+2028, U+2029 as \u2028, \u2029
      end
    end
  end
  return n
end

-- member_size is the JSON size of state field k holding value bytes:
-- '"key":value,'.
local function member_size(k, bytes)
  return #k + bytes + 3 + key_escapes(k)
end

-- resized is size once state field k holds v: the member it replaces (if
-- any, and if the stored state is an object: raw_now says it is not)
-- taken out, the new one put in.
local function resized(c, size, k, v, raw_now)
  if not raw_now then
    local old = redis.call('HSTRLEN', c.flow, k)
    if old > 0 then
      size = size - member_size(k, old)
    end
  end
  return size + member_size(k, #v)
end

-- apply_state changes the state as c.argv[at..] says and keeps its size;
-- the new pairs and the size are written by the next flush (or commit).
-- c.argv[at] is the mode:
--   'none'    nothing
--   'merge'   c.argv[at+1..] are '$'key/raw-JSON pairs: a shallow merge
--   'object'  the same pairs replace the whole state
--   'replace' c.argv[at+1] is a non-object JSON value that replaces it
-- Returns an error reply when the new state would exceed c.state_limit,
-- before anything is written. Its cost grows with the patch only (a whole
-- replacement also with the old state's key count).
local function apply_state(c, f, at)
  local argv = c.argv
  local mode = argv[at]
  if mode == 'none' then
    return nil
  end
  local raw_now = f.raw == '1'
  if mode == 'replace' then
    local raw = argv[at + 1]
    if #raw > c.state_limit then
      return err(ERR.TOOLARGE, #raw)
    end
    if not raw_now then
      drop_object_state(c)
    end
    redis.call('HSET', c.flow, 'state', raw, 'raw', '1', 'size', #raw)
    f.raw, f.size = '1', tostring(#raw)
    return nil
  end
  local size = tonumber(f.size or '1')
  if mode == 'object' or raw_now then
    size = 1 -- '{' and '}' less the last member's comma
  end
  for i = at + 1, #argv, 2 do
    size = resized(c, size, argv[i], argv[i + 1], mode ~= 'merge' or raw_now)
  end
  if size > c.state_limit then
    return err(ERR.TOOLARGE, size)
  end
  if mode == 'object' and not raw_now and not f.fresh then
    drop_object_state(c) -- a new flow (f.fresh: create.lua) has none
  end
  if raw_now then
    redis.call('HDEL', c.flow, 'state', 'raw')
    f.raw = nil
  end
  if #argv > at then
    f.pending = at + 1
  end
  f.size, f.size_dirty = tostring(size), true
  return nil
end

-- merge_member merges one state member (field k, raw JSON v) as a merge
-- patch of that one key does, checking the size first: an error reply,
-- before anything is written, when the state would grow too large. It
-- writes at once (nothing pending); the size goes with the next flush.
local function merge_member(c, f, k, v)
  local raw_now = f.raw == '1'
  local size = 1
  if not raw_now then
    size = tonumber(f.size or '1')
  end
  size = resized(c, size, k, v, raw_now)
  if size > c.state_limit then
    return err(ERR.TOOLARGE, size)
  end
  if raw_now then
    redis.call('HDEL', c.flow, 'state', 'raw')
    f.raw = nil
  end
  redis.call('HSET', c.flow, k, v)
  f.size, f.size_dirty = tostring(size), true
  return nil
end
