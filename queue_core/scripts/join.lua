-- join: give a visitor a place in a lane of the room's line, or return the place they hold.
--
-- KEYS[1] room state hash   KEYS[2] admitted zset   KEYS[3] invitations-used set
-- KEYS[4..8] the lane's keys: lane state hash (the room state for the main lane), line zset,
--   seen bitfield, holes list, pre-queue zset
-- KEYS[9] the joining address's counter   KEYS[10] its subnet's counter
-- KEYS[11] the proof-of-work record for the challenge this join solved
-- KEYS[12] the active zset (admitted visitors on the site: the room's cap on them)
-- KEYS[13..] every lane's line zset (to know whether anybody at all is waiting)
-- ARGV[1] now override in microseconds, or '' for the server clock
-- ARGV[2] visitor id   ARGV[3] a random number in [0, 1): this visitor's draw in a pre-queue
-- ARGV[4] an invitation id to redeem (single use), or ''
-- ARGV[5] the room generation the caller last saw ('' if none)   ARGV[6] a fresh random id
-- ARGV[7] '1' for a newcomer, to whom the room's join limits and proof of work apply; '' for a
--   visitor the caller already knows (a signed ticket, an invitation), who is exempt
-- ARGV[8] leading zero bits of the proof of work solved (0: none)
-- ARGV[9] milliseconds to remember that challenge as spent
-- ARGV[10] '1' to count a newcomer against their address's and subnet's limits ('' for an
--   address that is not a client's own, such as a proxy's)
-- ARGV[11] the highest place in this lane the caller knows was handed out (0 if none)
-- Returns {status, place, head, now, extra}: status is 'waiting', 'admitted' (went straight
-- through: nobody was waiting and a slot was free), 'scheduled' (in the pre-queue before a
-- scheduled opening; place 0 until the opening draws the order), 'closed', 'used' (the
-- invitation was already redeemed), 'recovering' (Redis lost the room, or its last moments,
-- and no tick has restored it yet: ask again in a second), 'limited' (too many new places from this
-- address or subnet: extra is the milliseconds until the window ends), 'challenge' (a proof
-- of work is needed: extra is the bits asked) or 'replayed' (that proof was spent already).
-- Every status but the first three changes nothing (place 0).
local now = now_us(ARGV[1])
local vid = ARGV[2]
local st = load_state(KEYS[1])
local lane_st = (KEYS[4] == KEYS[1]) and st or load_state(KEYS[4])
local head = num(lane_st, 'head', 0)

local existing = redis.call('ZSCORE', KEYS[5], vid)
if existing then
  return {'waiting', tonumber(existing), head, now, 0}
end
if st['gen'] and st['gen'] == ARGV[5] and tonumber(ARGV[11]) > num(lane_st, 'seq', 0) then
  -- Places the caller knows were handed out are missing (a failover to a replica that was
  -- behind): handing them out again would give two visitors one place. The tick restores
  -- the room first.
  return {'recovering', 0, head, now, 0}
end
if not st['gen'] then
  -- No generation: a brand-new room (start one), or one Redis just lost (a caller who saw
  -- it before says so): then the next tick restores it first, and this visitor retries.
  if ARGV[5] ~= '' then return {'recovering', 0, head, now, 0} end
  st['gen'] = ARGV[6]
  redis.call('HSET', KEYS[1], 'gen', st['gen'])
end
if st['closed'] == '1' then
  return {'closed', 0, head, now, 0}
end

-- A newcomer: the per-address limits are checked here, in the same round trip as the join,
-- and counted only once a place is given. Counters expire on the server's clock, set in this
-- script with the count itself, so no lost EXPIRE can ever freeze an address out.
local newcomer = ARGV[7] == '1'
local window_ms = math.floor(num(st, 'join_window_us', 600000000) / 1000)
local caps = {0, 0}
if newcomer and ARGV[10] == '1' then
  caps = {num(st, 'joins_per_ip', 0), num(st, 'joins_per_subnet', 0)}
end
if newcomer then
  local wait_ms = 0
  for i = 1, 2 do
    local key = KEYS[8 + i]
    if caps[i] > 0 and tonumber(redis.call('GET', key) or '0') >= caps[i] then
      local left = redis.call('PTTL', key)
      if left < 0 then
        redis.call('PEXPIRE', key, window_ms)
        left = window_ms
      end
      wait_ms = math.max(wait_ms, left)
    end
  end
  if wait_ms > 0 then return {'limited', 0, head, now, wait_ms} end
  local bits = (st['challenge'] == '1') and num(st, 'challenge_bits', 0) or 0
  if bits > 0 then
    if tonumber(ARGV[8]) < bits then return {'challenge', 0, head, now, bits} end
    -- A solution works once, whichever gateway sees it.
    if not redis.call('SET', KEYS[11], '1', 'PX', ARGV[9], 'NX') then
      return {'replayed', 0, head, now, 0}
    end
  end
end

local function count_newcomer()
  if not newcomer then return end
  for i = 1, 2 do
    if caps[i] > 0 then
      local key = KEYS[8 + i]
      if redis.call('INCR', key) == 1 or redis.call('PTTL', key) < 0 then
        redis.call('PEXPIRE', key, window_ms)
      end
    end
  end
end

if ARGV[4] ~= '' and redis.call('SADD', KEYS[3], ARGV[4]) == 0 then
  return {'used', 0, head, now, 0}
end
if num(st, 'opens_at', 0) > now and st['opened'] ~= '1' then
  -- Before the opening nobody is ahead of anybody: everyone here now gets a random place
  -- at the opening, so arriving at 05:00 is no better than arriving at 07:59.
  if redis.call('ZADD', KEYS[8], 'NX', ARGV[3], vid) == 1 then count_newcomer() end
  return {'scheduled', 0, head, now, 0}
end

local place = redis.call('HINCRBY', KEYS[4], 'seq', 1)
count_newcomer()
-- Nobody waiting and spare capacity: straight through. Only one slot is ever free for an
-- empty line, however long it was empty: slots are not banked for people not yet here.
local nobody = true
for i = 13, #KEYS do
  if redis.call('ZCARD', KEYS[i]) > 0 then nobody = false; break end
end
-- A full site takes nobody new, straight through or not (as in tick.lua).
local max_active = num(st, 'max_active', 0)
local site_full = max_active > 0
  and redis.call('ZCARD', KEYS[12]) + redis.call('ZCARD', KEYS[2]) >= max_active
local interval = slot_interval(st)
if nobody and not site_full and interval ~= nil and st['paused'] ~= '1'
    and num(st, 'next_slot', now) <= now then
  local claim_us = num(st, 'claim_us', 300000000)
  redis.call('ZADD', KEYS[2], fmt(now + claim_us), vid)
  redis.call('HSET', KEYS[4], 'head', place)
  redis.call('HINCRBY', KEYS[4], 'lane_processed', 1)
  redis.call('HSET', KEYS[1], 'next_slot', fmt(now + interval))
  redis.call('HINCRBY', KEYS[1], 'processed', 1)
  redis.call('HINCRBY', KEYS[1], 'admitted_total', 1)
  return {'admitted', place, place, now, 0}
end
redis.call('ZADD', KEYS[5], place, vid)
mark_seen(KEYS[6], now, {place})
return {'waiting', place, head, now, 0}
