-- tick: admit whoever's slots have come due, sweep out visitors who stopped checking, and
-- return a snapshot of the room. Every gateway worker runs it a few times a second; it is
-- atomic and driven by the server clock, so it makes no difference how many run it, and no
-- single process's death stops the room.
--
-- A room has one or more lanes (the main lane, plus priority lanes invited in). Each lane is a
-- line of its own: its own places, head, holes and heartbeats. The room's slots are shared out
-- between lanes with people in them by smooth weighted round robin, in proportion to shares.
--
-- KEYS[1] room state hash   KEYS[2] admitted zset   KEYS[3] active zset   KEYS[4] history list
-- then per lane (main lane first): lane state hash (the room state for the main lane),
--   line zset, seen bitfield, holes list, pre-queue zset
-- ARGV[1] now override in microseconds, or ''   ARGV[2] number of lanes
-- ARGV[3] the room generation the caller last saw ('' if none)   ARGV[4] a fresh random id,
--   the new generation if the room's state turns out to be lost
-- ARGV[5..8] the room's processed, admitted_total, abandoned_total and no_show_total as the
--   caller last saw them
-- ARGV[9] the pass epoch the caller last saw (0 if none): a lost room takes it back, so a
--   data loss never brings revoked passes back to life
-- then per lane: name, share, absolute index of the first hole the caller has not seen,
--   the lane's head, seq and processed as the caller last saw them (its seq also counts the
--   places the caller's own joins handed out), number of places seen, and those places
--   (visitors who checked since the caller's last tick)
-- Returns {now, processed, admitted_total, abandoned_total, no_show_total, active, paused,
--          closed, rate (string), sold_out, opens_at, opened, banner (string), generation,
--          recoveries, recovered_at, epoch, challenge bits (0: no proof of work asked),
--          sessions per pass (-1: not set), lanes,
--          then per lane: head, seq, waiting, prequeue, processed, holes_from, n, hole...}
local MAX_WORK = 2000      -- places examined at the heads per call: bounds the script's run time
local SWEEP_BATCH = 100    -- places examined by the background sweep per call, over all lanes
local MAX_HOLES = 20000    -- holes returned per call; a new worker catches up over a few ticks
local MAX_REVEAL = 10000   -- pre-queue visitors placed in line per call after an opening
local SAMPLE_US = 10000000 -- one history sample per 10 s, whichever gateway ticks first
local HISTORY = 360        -- samples kept: an hour

local now = now_us(ARGV[1])
local st = load_state(KEYS[1])
local grace_us = num(st, 'grace_us', 300000000)
local claim_us = num(st, 'claim_us', 300000000)

local TOTALS = {'processed', 'admitted_total', 'abandoned_total', 'no_show_total'}
local known_gen = ARGV[3]

local lanes = {}
local a = 10
for i = 1, tonumber(ARGV[2]) do
  local k = 4 + (i - 1) * 5
  local lane = {name = ARGV[a], share = tonumber(ARGV[a + 1]), holes_from = tonumber(ARGV[a + 2]),
    st_key = KEYS[k + 1], line = KEYS[k + 2], seen = KEYS[k + 3], holes = KEYS[k + 4],
    pre = KEYS[k + 5], admitted = 0, skipped = 0, swept = 0,
    known = {head = tonumber(ARGV[a + 3]), seq = tonumber(ARGV[a + 4]),
      lane_processed = tonumber(ARGV[a + 5])}}
  -- Heartbeats ride along with the tick: one round trip per room per worker per tick.
  mark_seen(lane.seen, now, ARGV, a + 7, a + 6 + tonumber(ARGV[a + 6]))
  a = a + 7 + tonumber(ARGV[a + 6])
  lane.st = (i == 1) and st or load_state(lane.st_key)
  lanes[i] = lane
end

-- Counters only ever grow on one server. A caller that saw more than the server holds now
-- talked to a server that is gone: a failover promoted a replica that had not yet received
-- the last writes (replication is asynchronous). That is a partial loss of the room.
local behind = false
if st['gen'] and known_gen == st['gen'] then
  for i, field in ipairs(TOTALS) do
    if tonumber(ARGV[4 + i]) > num(st, field, 0) then behind = true end
  end
  for _, lane in ipairs(lanes) do
    for field, seen in pairs(lane.known) do
      if seen > num(lane.st, field, 0) then behind = true end
    end
  end
end

-- Redis lost the room (FLUSHALL, a restart without persistence: the state hash has no
-- generation), or the last moments of it (behind). Start a new generation, and take the
-- heads, place counters and totals up to what the caller last saw, so no waiting visitor's
-- position jumps up and newcomers queue behind everyone. Waiting visitors come back one by
-- one at the places their signed tickets carry (a ticket of an older generation says so).
local recovering = false
if not st['gen'] or behind then
  recovering = known_gen ~= ''
  st['gen'] = ARGV[4]
  redis.call('HSET', KEYS[1], 'gen', st['gen'])
  if recovering then
    st['prev_gen'], st['recovered_at'] = known_gen, fmt(now)
    st['recoveries'] = num(st, 'recoveries', 0) + 1
    -- The slot clock restarts now: the lost time releases nobody.
    st['next_slot'] = fmt(now)
    redis.call('HSET', KEYS[1], 'prev_gen', known_gen, 'recovered_at', st['recovered_at'],
      'recoveries', st['recoveries'], 'next_slot', st['next_slot'])
  end
elseif known_gen ~= '' and known_gen == st['prev_gen'] then
  -- Another gateway that saw the old generation: its floors count too (only ever upwards).
  recovering = true
end

-- Revocation survives the loss: the epoch never goes below what any gateway has seen.
local known_epoch = tonumber(ARGV[9])
if recovering and known_epoch > num(st, 'epoch', 0) then
  st['epoch'] = known_epoch
  redis.call('HSET', KEYS[1], 'epoch', known_epoch)
end

if recovering then
  for i, field in ipairs(TOTALS) do
    local seen = tonumber(ARGV[4 + i])
    if seen > num(st, field, 0) then st[field] = seen end
  end
  for _, lane in ipairs(lanes) do
    for field, seen in pairs(lane.known) do
      if seen > num(lane.st, field, 0) then lane.st[field] = seen end
    end
    -- head and lane_processed are written back below with the rest of the lane's counters.
    redis.call('HSET', lane.st_key, 'seq', fmt(num(lane.st, 'seq', 0)))
  end
end
for _, lane in ipairs(lanes) do
  lane.head = num(lane.st, 'head', 0)
  if recovering then
    -- After a partial loss the line still holds people whose turn came in the lost moments
    -- (the head floor is past them): those still checking are let in again, as they were.
    local due_already = redis.call('ZRANGE', lane.line, '-inf', lane.head, 'BYSCORE', 'LIMIT', 0,
      MAX_WORK, 'WITHSCORES')
    for i = 1, #due_already, 2 do
      local vid, place = due_already[i], tonumber(due_already[i + 1])
      redis.call('ZREM', lane.line, vid)
      if is_alive(lane.seen, now, place, grace_us) then
        redis.call('ZADD', KEYS[2], fmt(now + claim_us), vid)
      end
    end
  end
end

-- A scheduled opening: reserve, in every lane, one block of places for its whole pre-queue at
-- once (so anyone arriving after the opening is behind all of them), then fill the blocks in
-- the order of the random draws, a bounded number per call so Redis is never blocked for long.
local opens_at = num(st, 'opens_at', 0)
if opens_at > 0 and now >= opens_at and st['opened'] ~= '1' then
  for _, lane in ipairs(lanes) do
    local count = redis.call('ZCARD', lane.pre)
    local base = num(lane.st, 'seq', 0)
    lane.st['pre_base'], lane.st['pre_moved'], lane.st['seq'] = base, 0, base + count
    redis.call('HSET', lane.st_key, 'pre_base', base, 'pre_moved', 0, 'seq', base + count)
  end
  -- The slot clock starts at the opening: the time before it releases nobody.
  st['opened'], st['next_slot'] = '1', fmt(opens_at)
  redis.call('HSET', KEYS[1], 'opened', 1, 'next_slot', st['next_slot'])
end
if st['opened'] == '1' then
  for _, lane in ipairs(lanes) do
    local drawn = redis.call('ZRANGE', lane.pre, 0, MAX_REVEAL - 1)
    if #drawn > 0 then
      local first = num(lane.st, 'pre_base', 0) + num(lane.st, 'pre_moved', 0)
      local places = {}
      for i = 1, #drawn do
        redis.call('ZADD', lane.line, first + i, drawn[i])
        places[i] = first + i
      end
      mark_seen(lane.seen, now, places)
      redis.call('ZREMRANGEBYRANK', lane.pre, 0, #drawn - 1)
      lane.st['pre_moved'] = num(lane.st, 'pre_moved', 0) + #drawn
      redis.call('HSET', lane.st_key, 'pre_moved', lane.st['pre_moved'])
    end
  end
end

-- Admission at the heads of the lanes.
local due, next_slot, interval = slots_due(st, now)
-- A cap on admitted visitors at once (on the site, or on their way to it): a full site takes
-- nobody new, and the slots are not banked (`capped` stops the catch-up below).
local max_active = num(st, 'max_active', 0)
local capped = false
if max_active > 0 and due > 0 then
  local room_left = max_active - redis.call('ZCARD', KEYS[3]) - redis.call('ZCARD', KEYS[2])
  if room_left < due then
    due = math.max(0, room_left)
    capped = true
  end
end

local work = 0
-- Admit the next visitor of `lane` who is still checking; skip (and count) those who stopped.
local function admit_next(lane)
  while work < MAX_WORK do
    local m = redis.call('ZRANGE', lane.line, 0, 0, 'WITHSCORES')
    if #m == 0 then return false end
    local vid, place = m[1], tonumber(m[2])
    redis.call('ZREM', lane.line, vid)
    work = work + 1
    if place <= lane.head then
      -- Left behind the head (by a recovery with more to do than one call, or a place held
      -- twice): their turn came already, and it takes no slot now.
      if is_alive(lane.seen, now, place, grace_us) then
        redis.call('ZADD', KEYS[2], fmt(now + claim_us), vid)
      end
    else
      lane.head = place
      if is_alive(lane.seen, now, place, grace_us) then
        redis.call('ZADD', KEYS[2], fmt(now + claim_us), vid)
        lane.admitted = lane.admitted + 1
        return true
      end
      lane.skipped = lane.skipped + 1
    end
  end
  return false
end

local admitted, stalled = 0, false
local open = {}
for i, lane in ipairs(lanes) do
  open[i] = true
  lane.current = num(st, 'swrr:' .. lane.name, 0)
end
while admitted < due do
  -- Smooth weighted round robin: every open lane earns its share, the richest is served and
  -- pays back the total. A lane with nobody (alive) in it drops out and its turns go to others.
  local total, best = 0, nil
  for i, lane in ipairs(lanes) do
    if open[i] then
      total = total + lane.share
      lane.current = lane.current + lane.share
      if best == nil or lane.current > lanes[best].current then best = i end
    end
  end
  if best == nil then break end
  lanes[best].current = lanes[best].current - total
  if admit_next(lanes[best]) then
    admitted = admitted + 1
  else
    open[best] = false
    if work >= MAX_WORK then stalled = true; break end
  end
end

if interval ~= nil then
  next_slot = next_slot + admitted * interval
  -- The line ran dry (or the site is full): the unused slots are not banked for people who
  -- have not arrived yet, but one slot stays ready so the next arrival goes straight through.
  if (capped or (admitted < due and not stalled)) and next_slot < now then next_slot = now end
end

-- Background sweep: places ahead that stopped checking no longer count as people ahead.
local per_lane = math.max(10, math.floor(SWEEP_BATCH / #lanes))
for _, lane in ipairs(lanes) do
  local cursor = math.max(num(lane.st, 'sweep', 0), lane.head)
  local ahead = redis.call('ZRANGE', lane.line, '(' .. cursor, '+inf', 'BYSCORE', 'LIMIT', 0,
    per_lane, 'WITHSCORES')
  if #ahead == 0 then
    cursor = lane.head
  else
    for i = 1, #ahead, 2 do
      local vid, place = ahead[i], tonumber(ahead[i + 1])
      cursor = place
      if not is_alive(lane.seen, now, place, grace_us) then
        redis.call('ZREM', lane.line, vid)
        redis.call('RPUSH', lane.holes, place)
        lane.swept = lane.swept + 1
      end
    end
  end
  -- Forget holes the head has passed: no position depends on them any more.
  local trimmed = 0
  while trimmed < 1000 do
    local first = redis.call('LINDEX', lane.holes, 0)
    if not first or tonumber(first) > lane.head then break end
    redis.call('LPOP', lane.holes)
    trimmed = trimmed + 1
  end
  lane.holes_base = num(lane.st, 'holes_base', 0) + trimmed
  lane.processed = num(lane.st, 'lane_processed', 0) + lane.admitted + lane.skipped
  lane.st['head'], lane.st['sweep'] = lane.head, cursor
  redis.call('HSET', lane.st_key, 'head', lane.head, 'sweep', cursor, 'holes_base',
    lane.holes_base, 'lane_processed', lane.processed)
  if #lanes > 1 then
    redis.call('HSET', KEYS[1], 'swrr:' .. lane.name, lane.current)
  end
end

-- Admitted visitors who never came, and passes that ran out.
local no_shows = redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. fmt(now))
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. fmt(now))

local skipped, swept = 0, 0
for _, lane in ipairs(lanes) do
  skipped, swept = skipped + lane.skipped, swept + lane.swept
end
local totals = {processed = admitted + skipped, admitted_total = admitted,
  abandoned_total = skipped + swept, no_show_total = no_shows}
local out = {}
for field, delta in pairs(totals) do
  out[field] = num(st, field, 0) + delta
end
redis.call('HSET', KEYS[1], 'next_slot', fmt(next_slot), 'processed', out['processed'],
  'admitted_total', out['admitted_total'], 'abandoned_total', out['abandoned_total'],
  'no_show_total', out['no_show_total'])

local waiting, prequeue, arrivals = 0, 0, 0
for _, lane in ipairs(lanes) do
  lane.waiting = redis.call('ZCARD', lane.line)
  lane.prequeue = redis.call('ZCARD', lane.pre)
  waiting, prequeue = waiting + lane.waiting, prequeue + lane.prequeue
  arrivals = arrivals + num(lane.st, 'seq', 0)
end
local active = redis.call('ZCARD', KEYS[3])

-- History for the ops charts: exact counters, sampled on the server clock.
if now >= num(st, 'next_sample', 0) then
  redis.call('LPUSH', KEYS[4], table.concat({now, arrivals, out['processed'],
    out['admitted_total'], out['abandoned_total'], out['no_show_total'], active, waiting,
    st['rate'] or '0', num(st, 'arrived_total', 0), prequeue}, ','))
  redis.call('LTRIM', KEYS[4], 0, HISTORY - 1)
  redis.call('HSET', KEYS[1], 'next_sample', fmt(now - now % SAMPLE_US + SAMPLE_US))
end

local reply = {now, out['processed'], out['admitted_total'], out['abandoned_total'],
  out['no_show_total'], active, st['paused'] == '1' and 1 or 0, st['closed'] == '1' and 1 or 0,
  st['rate'] or '0', st['sold_out'] == '1' and 1 or 0, opens_at, st['opened'] == '1' and 1 or 0,
  st['banner'] or '', st['gen'], num(st, 'recoveries', 0), num(st, 'recovered_at', 0),
  num(st, 'epoch', 0), st['challenge'] == '1' and num(st, 'challenge_bits', 0) or 0,
  num(st, 'sessions_per_pass', -1), #lanes}
for _, lane in ipairs(lanes) do
  local from = math.max(lane.holes_from or 0, lane.holes_base)
  local holes = redis.call('LRANGE', lane.holes, from - lane.holes_base,
    from - lane.holes_base + MAX_HOLES - 1)
  for _, v in ipairs({lane.head, num(lane.st, 'seq', 0), lane.waiting, lane.prequeue,
      lane.processed, from, #holes}) do
    reply[#reply + 1] = v
  end
  for i = 1, #holes do reply[#reply + 1] = tonumber(holes[i]) end
end
return reply
