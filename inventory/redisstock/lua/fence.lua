-- Begin a rebuild of one node: take its rebuild lease and fence it (drop
-- the ready key: every write answers 'notready' from now on).
--
-- KEYS: 1 ready, 2 rebuild lease
-- ARGV: 1 the caller's lease token, 2 lease TTL in ms,
--       3 '1': only if the node is not ready (a ready check acting on what
--         it saw a moment ago must not fence a node rebuilt since)
-- Returns {'ok'} | {'busy'} (another lease is held) | {'ready'}
local held = redis.call('GET', KEYS[2])
if held == ARGV[1] then
  return {'ok'} -- go-redis retried this script after a lost reply
end
if held then
  return {'busy'}
end
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  return {'ready'}
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[1])
return {'ok'}
