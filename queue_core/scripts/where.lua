-- where: the place of a visitor who joined a pre-queue, once the opening has drawn it.
--
-- KEYS[1] room state hash   KEYS[2] admitted zset   KEYS[3] active zset
-- KEYS[4] lane state hash   KEYS[5] lane line zset   KEYS[6] lane pre-queue zset
-- ARGV[1] visitor id
-- Returns the place (already in line, or reserved and about to be moved in), 0 if the room has
-- not opened yet, or -1 if this visitor is in neither (their place lapsed, or Redis lost it).
local vid = ARGV[1]
local placed = redis.call('ZSCORE', KEYS[5], vid)
if placed then return tonumber(placed) end
if redis.call('ZSCORE', KEYS[2], vid) or redis.call('ZSCORE', KEYS[3], vid) then
  -- Admitted already (the first drawn can be let in at the opening itself): any place the
  -- head has passed says "your turn", and the claim that follows is the real check.
  return tonumber(redis.call('HGET', KEYS[4], 'head') or '0')
end
if redis.call('HGET', KEYS[1], 'opened') ~= '1' then
  if redis.call('ZSCORE', KEYS[6], vid) then return 0 end
  return -1
end
local rank = redis.call('ZRANK', KEYS[6], vid)
if rank == false then return -1 end
local st = redis.call('HMGET', KEYS[4], 'pre_base', 'pre_moved')
return tonumber(st[1] or '0') + tonumber(st[2] or '0') + rank + 1
