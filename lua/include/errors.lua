-- errors.lua: err(code, detail) builds a refusal: an error reply
-- '<CODE> <detail>' that Go maps to a typed error (scripts.go, refusals).
-- A code not in the prelude's ERR table raises a script error, so a typo
-- is loud, never an unknown refusal.
--@include prelude

local function err(code, detail)
  if code == nil or ERR[code] ~= code then
    error('taskflow: unknown refusal code ' .. tostring(code))
  end
  if detail ~= nil then
    return redis.error_reply(code .. ' ' .. tostring(detail))
  end
  return redis.error_reply(code)
end
