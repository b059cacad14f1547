-- Spend-once of one refresh token across the fleet (src/gateway/cluster/refresh.rs).
-- KEYS[1] {cg}:rev   KEYS[2] {cg}:rt:<jti>   KEYS[3] {cg}:rtg:<jti>
-- ARGV[1] sid  ARGV[2] sub  ARGV[3] iat (unix s)  ARGV[4] jti
-- ARGV[5] grace_ms  ARGV[6] marker_ttl_ms  ARGV[7] sealed new pair
-- ARGV[8] '1' when the calling replica's journal already holds the jti as
--         spent (then the answer is never 'rotated', whatever Redis lost)
-- Returns {'revoked'} | {'grace', blob} | {'reuse'} | {'rotated'}.
-- Atomic: one script, so two replicas can never both see "not spent".
local t = redis.call('TIME')
local now = tonumber(t[1])
local now_ms = now * 1000 + math.floor(tonumber(t[2]) / 1000)

-- A revocation record in force at `now` (and, for a subject, covering
-- tokens issued at `iat`). A record that cannot be read counts as in
-- force: fail closed.
local function in_force(field, iat)
  local raw = redis.call('HGET', KEYS[1], field)
  if not raw then
    return false
  end
  local ok, rec = pcall(cjson.decode, raw)
  if not ok or type(rec) ~= 'table' then
    return true
  end
  local till = tonumber(rec['until'])
  if till == nil then
    return true
  end
  if till < now then
    return false
  end
  if iat ~= nil then
    local cut = tonumber(rec['issued_before'])
    if cut == nil then
      return true
    end
    return iat <= cut
  end
  return true
end

-- The family wins over everything, grace included.
if in_force('s:' .. ARGV[1], nil) or in_force('u:' .. ARGV[2], tonumber(ARGV[3])) then
  return {'revoked'}
end

local grace_ms = tonumber(ARGV[5])
local spent_at = redis.call('GET', KEYS[2])
if spent_at then
  if now_ms - tonumber(spent_at) <= grace_ms then
    local blob = redis.call('GET', KEYS[3])
    if blob then
      return {'grace', blob}
    end
  end
  return {'reuse'}
end

if ARGV[8] == '1' then
  return {'reuse'}
end

-- Spent before the marker was lost (a restart or wipe; the journals
-- re-seed {cg}:rev), or revoked by jti: someone else holds it.
if redis.call('HEXISTS', KEYS[1], 't:' .. ARGV[4]) == 1 then
  return {'reuse'}
end

redis.call('SET', KEYS[2], now_ms, 'PX', ARGV[6])
if grace_ms > 0 then
  -- The blob outlives the window by a second, so the window decides.
  redis.call('SET', KEYS[3], ARGV[7], 'PX', grace_ms + 1000)
end
return {'rotated'}
