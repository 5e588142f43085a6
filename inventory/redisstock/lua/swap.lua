-- Install a node's staged counters and holds in one step (the rebuild).
-- The staging keys were filled in bounded chunks; this script only renames,
-- so the node changes atomically without one long script.
--
-- KEYS: 1 ready, 2..6 live (onhand, reserved, safety, holds, deadlines),
--       7..11 the staged ones, same order, 12 the staging marker, 13 the done marker,
--       14 the rebuild lease
-- ARGV: 1 TTL of the done marker in ms, 2 the caller's lease token ('' = none)
-- Returns {'ok'} | {'ready'} (refused: a ready node takes writes, fence it first)
--       | {'gone'} (no staging: it expired, or another call swapped it)
--       | {'lease'} (the lease is not the caller's: it expired, another rebuild may run)
if redis.call('EXISTS', KEYS[13]) == 1 then
  -- go-redis retried this script after a lost reply: it already ran. Without
  -- this check the retry would find no staged keys and empty the node.
  return {'ok'}
end
if redis.call('EXISTS', KEYS[12]) == 0 then
  return {'gone'}
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'ready'}
end
if (redis.call('GET', KEYS[14]) or '') ~= ARGV[2] then
  return {'lease'}
end
for i = 2, 6 do
  if redis.call('EXISTS', KEYS[i + 5]) == 1 then
    redis.call('RENAME', KEYS[i + 5], KEYS[i])
    redis.call('PERSIST', KEYS[i])
  else
    redis.call('DEL', KEYS[i])
  end
end
redis.call('DEL', KEYS[12])
redis.call('SET', KEYS[13], '1', 'PX', ARGV[1])
return {'ok'}
