-- Install a node's staged counters and holds in one step (the rebuild).
-- The staging keys were filled in bounded chunks; this script only renames,
-- so the node changes atomically without one long script.
--
-- KEYS: 1 ready, 2..6 live (onhand, reserved, safety, holds, deadlines), 7..11 the staged ones, same order
-- Returns {'ok'} | {'ready'} (refused: a ready node takes writes, fence it first)
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'ready'}
end
for i = 2, 6 do
  if redis.call('EXISTS', KEYS[i + 5]) == 1 then
    redis.call('RENAME', KEYS[i + 5], KEYS[i])
    redis.call('PERSIST', KEYS[i])
  else
    redis.call('DEL', KEYS[i])
  end
end
return {'ok'}
