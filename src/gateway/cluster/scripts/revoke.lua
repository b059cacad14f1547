-- revoke.lua: publish one revocation to the fleet (helper `rev`).
-- KEYS[1] {cg}:rev (HASH field -> journal record JSON)
-- KEYS[2] {cg}:rev:exp (ZSET field -> until)
-- KEYS[3] {cg}:rev:log (STREAM: r = record, o = origin node, ms = origin ms)
-- ARGV: field, record JSON, at, until, issued_before ("" unless a subject
--       revocation), origin node, origin ms, stream retention ms.
-- Merges with the journal's `widen` rule (max of at / until /
-- issued_before), so a retry or a second replica publishing the same
-- revocation is a no-op: idempotent. Appends to the stream only when the
-- stored record changed. Returns {1|0 (changed), stored record JSON}.
local field, rec = ARGV[1], ARGV[2]
local at, untl = tonumber(ARGV[3]), tonumber(ARGV[4])
local ib = nil
if ARGV[5] ~= '' then ib = tonumber(ARGV[5]) end

local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now_ms = now_s * 1000 + math.floor(tonumber(t[2]) / 1000)

local old = redis.call('HGET', KEYS[1], field)
local stored = rec
if old then
  local ok, o = pcall(cjson.decode, old)
  if ok and type(o) == 'table' then
    local oat = tonumber(o['at']) or 0
    local ountl = tonumber(o['until']) or 0
    local oib = tonumber(o['issued_before'])
    local wider = untl > ountl or (ib ~= nil and (oib == nil or ib > oib))
    if not wider then
      return {0, old}
    end
    local dominates = at >= oat and untl >= ountl and (ib == nil or oib == nil or ib >= oib)
    if not dominates then
      local n = cjson.decode(rec)
      n['at'] = math.max(at, oat)
      n['until'] = math.max(untl, ountl)
      if ib ~= nil and oib ~= nil then
        n['issued_before'] = math.max(ib, oib)
      end
      untl = n['until']
      stored = cjson.encode(n)
    end
  end
end

redis.call('HSET', KEYS[1], field, stored)
redis.call('ZADD', KEYS[2], untl, field)
local minid = string.format('%d', math.max(0, now_ms - tonumber(ARGV[8])))
redis.call('XADD', KEYS[3], 'MINID', '~', minid, '*', 'r', stored, 'o', ARGV[6], 'ms', ARGV[7])

-- Prune what nobody can present any more (5 minutes of slack for clocks,
-- as the in-memory set keeps), at most 100 per call.
local over = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_s - 300, 'LIMIT', 0, 100)
for _, f in ipairs(over) do
  redis.call('HDEL', KEYS[1], f)
  redis.call('ZREM', KEYS[2], f)
end
return {1, stored}
