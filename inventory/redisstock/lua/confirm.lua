-- Clear an open hold's deadline (the order was paid).
--
-- KEYS: 1 ready, 2 holds, 3 deadlines, 4 closed marker of this hold
-- ARGV: 1 hold id
-- Returns {'ok'} | {'notready'} | {'closed', marker} | {'unknown'}
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'notready'}
end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return {'ok'}
end
local st = redis.call('GET', KEYS[4])
if st then
  return {'closed', st}
end
return {'unknown'}
