-- Install a node's staged counters, holds and restock ids in one step (the
-- rebuild). The staging keys were filled in bounded chunks; this script
-- only renames, so the node changes atomically without one long script.
--
-- KEYS: 1 ready, 2 the staging marker, 3 the done marker, 4 the rebuild lease,
--       then the n live keys (onhand, reserved, safety, holds, deadlines,
--       restocks), then the n staged ones, same order
-- ARGV: 1 TTL of the done marker in ms, 2 the caller's lease token ('' = none)
-- Returns {'ok'} | {'ready'} (refused: a ready node takes writes, fence it first)
--       | {'gone'} (no staging: it expired, or another call swapped it)
--       | {'lease'} (the lease is not the caller's: it expired, another rebuild may run)
if redis.call('EXISTS', KEYS[3]) == 1 then
  -- go-redis retried this script after a lost reply: it already ran. Without
  -- this check the retry would find no staged keys and empty the node.
  return {'ok'}
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return {'gone'}
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'ready'}
end
if (redis.call('GET', KEYS[4]) or '') ~= ARGV[2] then
  return {'lease'}
end
local n = (#KEYS - 4) / 2
for i = 5, 4 + n do
  if redis.call('EXISTS', KEYS[i + n]) == 1 then
    redis.call('RENAME', KEYS[i + n], KEYS[i])
    redis.call('PERSIST', KEYS[i])
  else
    redis.call('DEL', KEYS[i])
  end
end
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[1])
return {'ok'}
