-- session_touch.lua: a refresh updates its session's expiry and latest jti,
-- keeping when it started; a session the hash lost is added back. Never evicts.
-- KEYS[1] = <prefix>:{u:<hex128 sha256(sub)>}:sess
-- ARGV[1] = sid, ARGV[2] = value "created_ms|expires_ms|jti", ARGV[3] = key lifetime (ms)
local old = redis.call('HGET', KEYS[1], ARGV[1])
local value = ARGV[2]
if old then
  local created = string.match(old, '^(%d+)|')
  local rest = string.match(value, '^%d+|(.*)$')
  if created and rest then
    value = created .. '|' .. rest
  end
end
redis.call('HSET', KEYS[1], ARGV[1], value)
local ttl = tonumber(ARGV[3])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
