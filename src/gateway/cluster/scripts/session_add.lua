-- session_add.lua: count a new session against its subject's limit, atomically.
-- KEYS[1] = <prefix>:{u:<hex128 sha256(sub)>}:sess  (HASH sid -> "created_ms|expires_ms|jti")
-- ARGV[1] = now (ms), ARGV[2] = max sessions, ARGV[3] = new sid,
-- ARGV[4] = its value, ARGV[5] = key lifetime (ms)
-- Returns the evicted sessions as a flat list {sid1, value1, sid2, value2, ...}.
-- Order: drop expired (or unreadable) fields, then evict the oldest live ones
-- (by created, then sid) while len >= max, then add: as the local index does,
-- the newcomer is never the one evicted.
local now = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local sid = ARGV[3]
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
  local field, value = all[i], all[i + 1]
  local created, expires = string.match(value, '^(%d+)|(%d+)|')
  created = tonumber(created)
  expires = tonumber(expires)
  if created == nil or expires == nil or expires <= now then
    redis.call('HDEL', KEYS[1], field)
  elseif field ~= sid then
    live[#live + 1] = {created, field, value}
  end
end
table.sort(live, function(a, b)
  if a[1] ~= b[1] then
    return a[1] < b[1]
  end
  return a[2] < b[2]
end)
local evicted = {}
local left = #live
local i = 1
while left > 0 and left >= max do
  redis.call('HDEL', KEYS[1], live[i][2])
  evicted[#evicted + 1] = live[i][2]
  evicted[#evicted + 1] = live[i][3]
  left = left - 1
  i = i + 1
end
redis.call('HSET', KEYS[1], sid, ARGV[4])
local ttl = tonumber(ARGV[5])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return evicted
