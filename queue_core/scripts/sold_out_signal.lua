-- sold_out_signal: the booking site said whether it is sold out; follow it, once per change.
--
-- Every gateway worker reports what it heard when that differs from what it reported before,
-- so the same change arrives several times: only the first one acts. The room follows the site
-- into sold-out mode unless it is already there, and out of it only if the site put it there
-- (sold-out mode that ops set by hand stays until ops clear it).
--
-- KEYS[1] room state hash
-- ARGV[1] '1' (sold out) or '0' (dates left), as the booking site last said
-- Returns 1 when this call put the room into sold-out mode, -1 when it took it out, else 0.
local st = load_state(KEYS[1])
local said = ARGV[1]
if st['backend_sold_out'] == said then
  return 0
end
redis.call('HSET', KEYS[1], 'backend_sold_out', said)
if said == '1' and st['sold_out'] ~= '1' then
  redis.call('HSET', KEYS[1], 'sold_out', 1, 'sold_out_by', 'backend')
  return 1
end
if said == '0' and st['sold_out'] == '1' and st['sold_out_by'] == 'backend' then
  redis.call('HSET', KEYS[1], 'sold_out', 0, 'sold_out_by', 'backend')
  return -1
end
return 0
