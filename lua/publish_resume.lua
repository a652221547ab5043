-- publish_resume.lua: put a resume request on the resume bridge's stream
-- once per request id: a request re-sent under the same id (go-redis
-- re-sending a call whose reply was lost, a publisher's retry, a NATS
-- bridge handing one message off twice) while its id is remembered adds
-- nothing. The bridge's own handling recognises an id after that
-- (bridge.go).
--
-- KEYS: 1 the bridge's stream  2 the request ids published (zset: id by
--   when it is forgotten; both on the {bridge} tag)
-- ARGV: 1 request id  2 now (unix ms)  3 how long an id is remembered
--   (ms)  4 cap: ids remembered (past it the oldest is forgotten)
--   5 the stream entry's body
-- Returns: 1 added, 0 a repeat (nothing written).
-- Events: none.
--@include used

local id, now = ARGV[1], tonumber(ARGV[2])
if used_has(KEYS[2], id, now) then
  return 0
end
redis.call('XADD', KEYS[1], '*', 'body', ARGV[5])
used_add(KEYS[2], id, now, tonumber(ARGV[3]), tonumber(ARGV[4]))
return 1
