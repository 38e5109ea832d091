-- Shared prelude, prepended to every script of queue_core/scripts by store.py.
--
-- Times are integer microseconds from the Redis server's clock. A caller may pass an explicit
-- "now" (tests replay hours of traffic in milliseconds); gateways never do, so every gateway
-- agrees on one clock however far their own clocks drift.
--
-- "seen" is a bitfield holding, per place in line, the 16-bit code of the last period (of
-- SEEN_PERIOD_US) in which that visitor checked their status: 2 bytes per visitor instead of a
-- second sorted set. Code 0 means never seen; codes wrap after 65535 periods (about 3.8 days),
-- far longer than anyone stays in a line without being swept.

local SEEN_PERIOD_US = 5000000

local function now_us(override)
  if override ~= nil and override ~= '' then
    return tonumber(override)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function load_state(key)
  local flat = redis.call('HGETALL', key)
  local st = {}
  for i = 1, #flat, 2 do
    st[flat[i]] = flat[i + 1]
  end
  return st
end

local function num(st, field, default)
  local v = st[field]
  if v == nil then return default end
  return tonumber(v)
end

-- Integers above 2^31 lose nothing in Lua doubles, but tostring() would print them in
-- scientific notation; HSET through this keeps stored numbers exact and readable.
local function fmt(n)
  return string.format('%.0f', n)
end

local function seen_code(now)
  return math.floor(now / SEEN_PERIOD_US) % 65535 + 1
end

local function mark_seen(key, now, seqs, first, last)
  local code = seen_code(now)
  last = last or #seqs
  -- BITFIELD takes many SETs in one call; chunk so a huge batch cannot overflow unpack().
  for i = first or 1, last, 500 do
    local args = {}
    for j = i, math.min(i + 499, last) do
      args[#args + 1] = 'SET'
      args[#args + 1] = 'u16'
      args[#args + 1] = '#' .. seqs[j]
      args[#args + 1] = code
    end
    redis.call('BITFIELD', key, unpack(args))
  end
end

-- A visitor is still in line if they checked within the grace period (plus at most one period).
local function is_alive(key, now, seq, grace_us)
  local last = redis.call('BITFIELD', key, 'GET', 'u16', '#' .. seq)[1]
  if last == 0 then return false end
  local age = (seen_code(now) - last) % 65535
  return age * SEEN_PERIOD_US <= grace_us
end

-- Admission slots follow a fixed interval (60 s / rate). `next_slot` is the time of the next
-- unused slot. Slots missed while nobody ran a tick (an outage) are dropped beyond `burst`, so
-- recovery never releases a flood; slots are due only up to now, so nothing runs ahead.
local function slot_interval(st)
  local rate = num(st, 'rate', 0)
  if rate <= 0 then return nil end
  return 60000000 / rate
end

local function burst_of(st, interval)
  local b = num(st, 'burst', 0)
  if b >= 1 then return math.floor(b) end
  -- Default: two seconds' worth of slots, at least one. Ticks run several times a second, so
  -- in normal operation the cap is never reached and admissions stay within 1 of rate x time.
  return math.max(1, math.ceil(2000000 / interval))
end

-- Returns (slots due now, normalised next_slot, interval) or (0, now, nil) when not admitting.
local function slots_due(st, now)
  local interval = slot_interval(st)
  if interval == nil or st['paused'] == '1' then
    return 0, now, nil
  end
  local next_slot = num(st, 'next_slot', now)
  -- Late by up to `burst` intervals (less a microsecond) is caught up: at most `burst` slots
  -- fall due at once, and a tick that runs late loses no time.
  local earliest = now - (burst_of(st, interval) * interval - 1)
  if next_slot < earliest then next_slot = earliest end
  if now < next_slot then return 0, next_slot, interval end
  return math.floor((now - next_slot) / interval) + 1, next_slot, interval
end
