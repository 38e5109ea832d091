-- restore: put a visitor back at the place their signed ticket carries, after Redis lost the
-- room's line. Idempotent: a visitor already back (or never lost) is left as they are.
--
-- KEYS[1] room state hash   KEYS[2] admitted zset   KEYS[3] active zset
-- KEYS[4] lane state hash   KEYS[5] lane line zset   KEYS[6] lane seen bitfield
-- ARGV[1] now override in microseconds, or ''   ARGV[2] visitor id   ARGV[3] place
-- Returns {status, head, generation}: 'waiting' (back in line), 'admitted' (the place was
-- already at or behind the head when Redis lost it: they were due, so they are let in), or
-- 'present' (nothing to do).
local now = now_us(ARGV[1])
local vid, place = ARGV[2], tonumber(ARGV[3])
local st = load_state(KEYS[1])
local head = tonumber(redis.call('HGET', KEYS[4], 'head') or '0')
if redis.call('ZSCORE', KEYS[5], vid) or redis.call('ZSCORE', KEYS[2], vid)
    or redis.call('ZSCORE', KEYS[3], vid) then
  return {'present', head, st['gen'] or ''}
end
if place <= head then
  redis.call('ZADD', KEYS[2], fmt(now + num(st, 'claim_us', 300000000)), vid)
  return {'admitted', head, st['gen'] or ''}
end
redis.call('ZADD', KEYS[5], place, vid)
mark_seen(KEYS[6], now, {place})
if place > tonumber(redis.call('HGET', KEYS[4], 'seq') or '0') then
  redis.call('HSET', KEYS[4], 'seq', place)
end
return {'waiting', head, st['gen'] or ''}
