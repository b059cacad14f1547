-- rev_heartbeat.lua: the revocation mirror's check (helper `rev`).
-- KEYS[1] {cg}:epoch, KEYS[2] {cg}:rev:log. ARGV[1] a fresh 128-bit epoch.
-- The epoch is set by the first replica to look (SET NX, atomic here);
-- a changed or missing epoch means Redis lost its data: every replica
-- re-seeds it. Returns {epoch, 1 if this call set it, last-generated-id,
-- max-deleted-entry-id, entries-added, length} ("0-0", 0 when the stream
-- does not exist). Trimming does not move max-deleted-entry-id (checked
-- on 7.0.15): entries-added - length counts the entries trimmed away.
local e = redis.call('GET', KEYS[1])
local created = 0
if not e then
  redis.call('SET', KEYS[1], ARGV[1])
  e = ARGV[1]
  created = 1
end
local last, maxdel, added, len = '0-0', '0-0', 0, 0
if redis.call('EXISTS', KEYS[2]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[2])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      last = info[i + 1]
    elseif info[i] == 'max-deleted-entry-id' then
      maxdel = info[i + 1]
    elseif info[i] == 'entries-added' then
      added = info[i + 1]
    elseif info[i] == 'length' then
      len = info[i + 1]
    end
  end
end
return {e, created, last, maxdel, added, len}
