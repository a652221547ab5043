-- transition_early.lua: transition.lua for a wait on an external event,
-- with early events (early.go): the wait is met at once, in this same
-- script, by a kept event addressed to this flow that matches it (events
-- waiting, then resumed).
--
-- KEYS: the flow key set 1..15 (include/context.lua)
--   16 the flow's early-event list  17 the shard's early-event index  18 the
--   shard's memory of used events (see include/early.lua)
-- ARGV: as transition.lua, then two more, last (taken off before the
--   rest is read, so transition.lua's own stay as they are): how long to
--   remember a used event (ms), and the memory's cap (WithResumeIDMemory).
-- Returns, Errors: as transition.lua.
-- Events: as transition.lua; a wait met by a kept event adds resumed.
--@include context
--@include run_transition
--@include early

local mem = {key = KEYS[18]}
mem.cap = tonumber(table.remove(ARGV))
mem.keep = tonumber(table.remove(ARGV))
local c = mutation_context(KEYS, ARGV)
local list, index = KEYS[16], KEYS[17]
return run_transition(c, function(f)
  take_early(c, f, list, index, mem)
end)
