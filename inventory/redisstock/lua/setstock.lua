-- Apply an absolute WMS/ERP snapshot of on hand and safety; reserved is kept.
--
-- KEYS: 1 ready, 2 onhand, 3 reserved, 4 safety, 5 stock versions (absolute writes per sku)
-- ARGV: 1 sku, 2 on hand, 3 safety
-- Returns {'ok', onhand, reserved, safety} | {'notready'}
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'notready'}
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
redis.call('HINCRBY', KEYS[5], ARGV[1], 1)
return {'ok', tonumber(ARGV[2]), tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0'), tonumber(ARGV[3])}
