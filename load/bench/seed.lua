-- seed: put visitors in a room's main lane at once, as if each had just joined and checked
-- (benchmarks only: a million joins through the gateway would take minutes). Prefixed with
-- queue_core's _common.lua, so the heartbeat codes are exactly the tick's.
--
-- KEYS[1] room state hash   KEYS[2] line zset   KEYS[3] seen bitfield
-- ARGV[1] a generation for the room, used if it has none yet (as join.lua starts one)
-- ARGV[2] place of the first visitor   ARGV[3..] visitor ids, one per place from ARGV[2] on
-- Returns {seq, generation}: the highest place handed out, and the room's generation.
local now = now_us('')
local first = tonumber(ARGV[2])
local places = {}
for i = 3, #ARGV, 1000 do
  local args = {}
  for j = i, math.min(i + 999, #ARGV) do
    local place = first + j - 3
    args[#args + 1] = place
    args[#args + 1] = ARGV[j]
    places[#places + 1] = place
  end
  redis.call('ZADD', KEYS[2], unpack(args))
end
mark_seen(KEYS[3], now, places)
local last = first + #ARGV - 3
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if last > seq then
  redis.call('HSET', KEYS[1], 'seq', last)
  seq = last
end
redis.call('HSETNX', KEYS[1], 'gen', ARGV[1])
return {seq, redis.call('HGET', KEYS[1], 'gen')}
