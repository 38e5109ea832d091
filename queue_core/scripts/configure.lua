-- configure: change a room's live settings, atomically and on the server clock.
--
-- KEYS[1] state hash   KEYS[2] active zset (admitted visitors holding a pass)
-- ARGV[1] now override in microseconds, or ''   ARGV[2..] field, value, field, value...
--   The field 'epoch' with the value 'next' revokes every admission pass issued so far: the
--   epoch inside each pass's MAC moves on, and nobody counts as holding a pass any more (so a
--   revoked visitor cannot collect a new pass with their old ticket).
-- Returns the number of fields set.
local now = now_us(ARGV[1])
local st = load_state(KEYS[1])
local was_paused = st['paused'] == '1'
local was_scheduled = num(st, 'opens_at', 0) > 0 and st['opened'] ~= '1'
local old_interval = slot_interval(st)
for i = 2, #ARGV, 2 do
  if ARGV[i] == 'epoch' and ARGV[i + 1] == 'next' then
    st['epoch'] = tostring(redis.call('HINCRBY', KEYS[1], 'epoch', 1))
    redis.call('DEL', KEYS[2])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    st[ARGV[i]] = ARGV[i + 1]
  end
end
if was_scheduled and st['opens_at'] == '0' then
  -- Clearing a pending schedule opens the room now: the pre-queue is drawn at the next tick
  -- instead of being left waiting for an opening that will never come.
  st['opens_at'] = fmt(now)
  redis.call('HSET', KEYS[1], 'opens_at', st['opens_at'])
end
local interval = slot_interval(st)
local next_slot = num(st, 'next_slot', now)
if was_paused and st['paused'] ~= '1' then
  -- Resuming starts the slot clock afresh: the paused time releases nobody.
  next_slot = now
elseif interval ~= nil and (old_interval == nil or interval < old_interval) then
  -- A faster rate takes effect at once, not after the slow rate's next slot.
  next_slot = math.min(next_slot, now + interval)
end
redis.call('HSET', KEYS[1], 'next_slot', fmt(next_slot))
return (#ARGV - 1) / 2
