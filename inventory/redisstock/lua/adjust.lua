-- Add a delta to one reserved counter, never below zero (reconciliation),
-- if the node is still at the epoch the delta was computed in (a rebuild
-- since replaced the counters: the delta means nothing any more).
-- A delta is not idempotent by itself, and go-redis retries a script whose
-- reply was lost: the caller's one-time token makes a repeat a no-op.
--
-- KEYS: 1 ready, 2 reserved, 3 token key (in the node's slot)
-- ARGV: 1 sku, 2 delta, 3 token TTL in ms, 4 epoch
-- Returns {'ok', reserved} | {'dup'} (applied by the first run) | {'moved'} | {'notready'}
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  return {'notready'}
end
if epoch ~= ARGV[4] then
  return {'moved'}
end
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[3]) == false then
  return {'dup'}
end
local r = redis.call('HINCRBY', KEYS[2], ARGV[1], ARGV[2])
if r < 0 then
  redis.call('HSET', KEYS[2], ARGV[1], '0')
  r = 0
end
return {'ok', r}
