-- Repair on hand and safety of one SKU (reconciliation): add a delta to on
-- hand and set safety, if the node is still at the epoch and the SKU's
-- stock version is still the one the repair was computed from. Shipments
-- do not move the version (they move on hand on both sides alike); an
-- absolute SetStock or another repair does, and makes this one wait for
-- the next pass. The caller's one-time token records the answer, so a
-- go-redis retry after a lost reply gets the first answer again.
--
-- KEYS: 1 ready, 2 onhand, 3 safety, 4 stock versions, 5 token key
-- ARGV: 1 epoch, 2 sku, 3 version, 4 on hand delta, 5 safety, 6 token TTL in ms
-- Returns {'ok'} | {'moved'} | {'notready'}
local done = redis.call('GET', KEYS[5])
if done then
  return {done}
end
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  return {'notready'}
end
if epoch ~= ARGV[1] or tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '0') ~= tonumber(ARGV[3]) then
  redis.call('SET', KEYS[5], 'moved', 'PX', ARGV[6])
  return {'moved'}
end
redis.call('HINCRBY', KEYS[2], ARGV[2], ARGV[4])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[5])
redis.call('HINCRBY', KEYS[4], ARGV[2], 1)
redis.call('SET', KEYS[5], 'ok', 'PX', ARGV[6])
return {'ok'}
