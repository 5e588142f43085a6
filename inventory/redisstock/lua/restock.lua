-- Put returned units back into on hand (an after-sales return booked in
-- SQL), once per restock id. The node's sorted set of applied ids (score:
-- when applied, in ms) is pruned of ids older than the store's memory on
-- each call, so that it stays bounded. The stock version is not moved: a
-- restock is relative, as a shipment is (see inventory.DriftRestock).
-- go-redis retries a script whose reply was lost; the caller's one-time
-- token records the first answer, so the retry answers 'ok' again instead
-- of 'dup'.
--
-- KEYS: 1 ready, 2 onhand, 3 restock ids (sorted set), 4 token key (in the node's slot)
-- ARGV: 1 restock id, 2 sku, 3 qty, 4 now in ms, 5 cutoff in ms (ids applied
--       before it are forgotten), 6 token TTL in ms
-- Returns {'ok'} | {'dup'} (the id was applied before) | {'notready'}
local done = redis.call('GET', KEYS[4])
if done then
  return {done}
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'notready'}
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[5])
if redis.call('ZSCORE', KEYS[3], ARGV[1]) then
  return {'dup'}
end
redis.call('HINCRBY', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('SET', KEYS[4], 'ok', 'PX', ARGV[6])
return {'ok'}
