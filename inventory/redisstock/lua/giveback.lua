-- Remove an order from a purchase-limit counter; a no-op if it is not there.
--
-- KEYS: 1 the counter
-- ARGV: 1 order id
-- Returns 1 if something was given back, else 0
local f = 'o:' .. ARGV[1]
local q = redis.call('HGET', KEYS[1], f)
if not q then
  return 0
end
redis.call('HINCRBY', KEYS[1], 't', '-' .. q)
redis.call('HDEL', KEYS[1], f)
return 1
