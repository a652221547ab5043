-- children.lua: a parent's children and its join (children.go). Every
-- key is the parent's, under its shard's hash tag:
--   '<base>:kids:<id>'    zset: child id by spawn order (1, 2, ...)
--   '<base>:kidres:<id>'  hash: child id -> its outcome (JSON, once it
--                         ended), and '#finished', '#failed', '#cancelled'
--                         the count of outcomes of each status
-- A flow's field 'kids' counts its children; a child's 'parent' names
-- its parent. A children wait is stored in its canonical form,
-- '{"kind":"children",...}' (waits.lua is_join).
--@include prelude
--@include errors
--@include context
--@include state
--@include queues
--@include waits
--@include events

local function kids_key(c)
  return c.base .. ':kids:' .. c.id
end

local function results_key(c)
  return c.base .. ':kidres:' .. c.id
end

-- join_counts is the parent's count of children and of outcomes by
-- status.
local function join_counts(c, f)
  local v = redis.call('HMGET', results_key(c), '#finished', '#failed', '#cancelled')
  return tonumber(f.kids or '0'), tonumber(v[1] or '0'), tonumber(v[2] or '0'), tonumber(v[3] or '0')
end

-- join_why tells whether the join of wait (the parent's stored children
-- wait) is met, and why: 'fail_fast' (a child failed or was cancelled),
-- 'met' (need finished; need 0 = all), 'settled' (every child ended
-- without need finished); nil while it is not.
local function join_why(c, f)
  local ok, w = pcall(cjson.decode, f.wait)
  if not ok or type(w) ~= 'table' then
    return nil
  end
  local total, fin, failed, cancelled = join_counts(c, f)
  if w.fail_fast == true and failed + cancelled > 0 then
    return 'fail_fast'
  end
  local need = tonumber(w.need) or 0
  if need <= 0 then
    need = total
  end
  if fin >= need then
    return 'met'
  end
  if fin + failed + cancelled >= total then
    return 'settled'
  end
  return nil
end

-- join_summary is the JSON merged into the parent's state as "children"
-- when its join resumes it: the counts, why, and the outcomes of the
-- children that ended, in spawn order ("results"), unless they would
-- take more than budget bytes ("results_omitted": true; ListChildren
-- pages them). counts_only leaves the outcomes out (the resumed event's
-- payload).
local function join_summary(c, f, why, budget, counts_only)
  local total, fin, failed, cancelled = join_counts(c, f)
  local head = '{"total":' .. total .. ',"finished":' .. fin .. ',"failed":' .. failed ..
    ',"cancelled":' .. cancelled .. ',"pending":' .. (total - fin - failed - cancelled) ..
    ',"why":"' .. why .. '"'
  if counts_only then
    return head .. '}'
  end
  local parts, used = {}, 0
  local kids, res = kids_key(c), results_key(c)
  local from = 0
  while true do
    local ids = redis.call('ZRANGE', kids, from, from + 199)
    if #ids == 0 then
      break
    end
    local outs = redis.call('HMGET', res, unpack(ids))
    for i = 1, #ids do
      local o = outs[i]
      if o then
        used = used + #o + 1
        if used > budget then
          return head .. ',"results_omitted":true}'
        end
        parts[#parts + 1] = o
      end
    end
    from = from + 200
  end
  return head .. ',"results":[' .. table.concat(parts, ',') .. ']}'
end

-- join_resume resumes a parent whose join is met (why): its summary
-- merged into the state as "children", the wait cleared, status running
-- (queued for its controller's workers; no lease), a resumed event with
-- the counts. Outcomes that would take the state past its cap are left
-- out of the summary; the counts always fit (they may take the state
-- past its cap by their own size, as a failure does).
local function join_resume(c, f, why)
  local budget = c.state_limit - tonumber(f.size or '2')
  local summary = join_summary(c, f, why, math.floor(budget / 2))
  local e = merge_member(c, f, '$children', summary)
  if e then
    summary = join_summary(c, f, why, 0)
    c.state_limit = c.state_limit + #summary + 16
    e = merge_member(c, f, '$children', summary)
    if e then
      return e
    end
  end
  c.lease = ''
  clear_wait(c, f)
  set_status(c, f, S_RUNNING)
  commit(c, f, '"resumed"', '{"children":' .. join_summary(c, f, why, 0, true) .. '}')
  return nil
end
