-- transition_early.lua: transition.lua for a wait on an external event,
-- with the mailbox (mailbox.go): the wait is met at once, in this same
-- script, by a kept event addressed to this flow that matches it (events
-- waiting, then resumed).
--
-- KEYS: the flow key set 1..15 (include/context.lua)
--   16 the flow's inbox list  17 the shard's kept-event index (see
--   include/early.lua)
-- ARGV: as transition.lua.
-- Returns, Errors: as transition.lua.
-- Events: as transition.lua; a wait met by a kept event adds resumed.
--@include context
--@include run_transition
--@include early

local c = mutation_context(KEYS, ARGV)
local inbox, kept = KEYS[16], KEYS[17]
return run_transition(c, function(f)
  take_inbox(c, f, inbox, kept)
end)
