-- claim: an admitted visitor arrives to collect their pass.
--
-- KEYS[1] state hash   KEYS[2] admitted zset   KEYS[3] active zset (visitor id -> pass expiry)
-- ARGV[1] now override in microseconds, or ''   ARGV[2] visitor id   ARGV[3] pass lifetime (us)
-- Returns {1, pass expiry, epoch} when admitted (again, idempotently, while the pass is valid),
-- or {0, 0, epoch} when this visitor was never admitted or let the claim window lapse. The
-- epoch goes into the pass: read here, a pass is never signed with an epoch just revoked.
local now = now_us(ARGV[1])
local vid = ARGV[2]
local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')

local expiry = redis.call('ZSCORE', KEYS[3], vid)
if expiry and tonumber(expiry) > now then
  return {1, tonumber(expiry), epoch}
end
local deadline = redis.call('ZSCORE', KEYS[2], vid)
if deadline and tonumber(deadline) >= now then
  local until_us = now + tonumber(ARGV[3])
  redis.call('ZREM', KEYS[2], vid)
  redis.call('ZADD', KEYS[3], fmt(until_us), vid)
  redis.call('HINCRBY', KEYS[1], 'arrived_total', 1)
  return {1, until_us, epoch}
end
return {0, 0, epoch}
