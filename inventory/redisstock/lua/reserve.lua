-- Reserve every line of one hold at one node, all or nothing.
-- Every key shares the node's hash tag, so the script runs on one slot.
--
-- KEYS: 1 ready, 2 onhand, 3 reserved, 4 safety, 5 holds, 6 deadlines, 7 closed marker of this hold
-- ARGV: 1 hold id, 2 deadline in ms (0 = none), 3 hold record (JSON),
--       4 mode: '0' a reservation (lines must fit under available), '1' a restore
--         of a ledger hold (lines must fit under on hand: reserved never passes it),
--       5.. sku, qty pairs (merged, at most MaxLines)
-- Returns {'ok'} | {'notready'} | {'dup', record} | {'closed', marker} | {'short', sku, have}
--       | {'unfit', sku, on hand less reserved} (restore only)
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'notready'}
end
-- A repeat of an open hold (go-redis retrying after a lost reply) reserves
-- nothing more: the caller compares the stored lines with its own.
local rec = redis.call('HGET', KEYS[5], ARGV[1])
if rec then
  return {'dup', rec}
end
local st = redis.call('GET', KEYS[7])
if st then
  return {'closed', st}
end
-- Lua has no rollback: check every line before writing anything.
for i = 5, #ARGV, 2 do
  local sku = ARGV[i]
  local have = tonumber(redis.call('HGET', KEYS[2], sku) or '0')
    - tonumber(redis.call('HGET', KEYS[3], sku) or '0')
  local tag = 'unfit'
  if ARGV[4] ~= '1' then
    have = have - tonumber(redis.call('HGET', KEYS[4], sku) or '0')
    tag = 'short'
  end
  if have < tonumber(ARGV[i + 1]) then
    if have < 0 then have = 0 end
    return {tag, sku, have}
  end
end
for i = 5, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[3], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[5], ARGV[1], ARGV[3])
if ARGV[2] ~= '0' then
  redis.call('ZADD', KEYS[6], ARGV[2], ARGV[1])
end
return {'ok'}
