-- Add a delta to one reserved counter, never below zero (reconciliation).
--
-- KEYS: 1 ready, 2 reserved
-- ARGV: 1 sku, 2 delta
-- Returns {'ok', reserved} | {'notready'}
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'notready'}
end
local r = redis.call('HINCRBY', KEYS[2], ARGV[1], ARGV[2])
if r < 0 then
  redis.call('HSET', KEYS[2], ARGV[1], '0')
  r = 0
end
return {'ok', r}
