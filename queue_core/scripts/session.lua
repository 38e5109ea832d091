-- session: may this browser session use this admission pass? Counts the distinct sessions
-- (browsers) each pass has been used from, up to the room's limit, so a copied pass opens
-- only a bounded number of sessions.
--
-- KEYS[1] the pass's session set
-- ARGV[1] the browser's session id   ARGV[2] most sessions per pass (1 or more)
-- ARGV[3] unix seconds at which the set may go: the pass's expiry, with a margin
-- Returns {1} if the session may use the pass (it is one of the first ARGV[2]), or {0, the
-- sessions that may} if the pass is already in use in as many other browsers as allowed.
local key, session, most = KEYS[1], ARGV[1], tonumber(ARGV[2])
if redis.call('SISMEMBER', key, session) == 1 then
  return {1}
end
local count = redis.call('SCARD', key)
if count >= most then
  return {0, unpack(redis.call('SMEMBERS', key))}
end
redis.call('SADD', key, session)
-- Set with the member, in one script: the set can never outlive its pass for want of a call.
redis.call('EXPIREAT', key, ARGV[3])
return {1}
