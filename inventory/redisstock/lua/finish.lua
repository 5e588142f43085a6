-- End a rebuild: mark the node ready under the lease's token as its new
-- epoch and drop the lease, if the caller still holds it.
--
-- KEYS: 1 ready, 2 rebuild lease
-- ARGV: 1 the caller's lease token
-- Returns {'ok'} | {'lost'} (the lease expired; nothing written)
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[2])
  return {'ok'}
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return {'ok'} -- go-redis retried this script after a lost reply
end
return {'lost'}
