-- Close one open hold: release it, commit it (shipped), or expire it.
--
-- KEYS: 1 ready, 2 onhand, 3 reserved, 4 holds, 5 deadlines, 6 closed marker of this hold
-- ARGV: 1 hold id, 2 new state ('released' | 'committed' | 'expired'),
--       3 how long to remember the closed id, in ms, 4 now in ms (for 'expired'),
--       5 the caller's one-time token
-- Returns {'ok', units} | {'notready'} | {'closed', marker} | {'unknown'} | {'notdue'}
--
-- The closed marker is "<state> <token> <units>". go-redis retries a script
-- whose reply was lost; the retry carries the same token and gets the first
-- answer again, so the caller that closed the hold learns it (the sweeper
-- then reports the expired id) instead of reading "already closed".
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'notready'}
end
local rec = redis.call('HGET', KEYS[4], ARGV[1])
if not rec then
  local st = redis.call('GET', KEYS[6])
  if st then
    local state, token, units = string.match(st, '^(%S+) (%S+) (%d+)$')
    if state == ARGV[2] and token == ARGV[5] then
      return {'ok', tonumber(units)}
    end
    return {'closed', st}
  end
  return {'unknown'}
end
if ARGV[2] == 'expired' then
  -- Another sweeper, a Confirm or a Release may have come first: only a
  -- hold still open and still due expires, so it expires exactly once.
  local d = redis.call('ZSCORE', KEYS[5], ARGV[1])
  if not d or tonumber(d) > tonumber(ARGV[4]) then
    return {'notdue'}
  end
end
local h = cjson.decode(rec)
local units = 0
for _, l in ipairs(h.l) do
  -- Quantities travel as strings: no float formatting on the way to HINCRBY.
  local r = redis.call('HINCRBY', KEYS[3], l[1], '-' .. l[2])
  if r < 0 then
    -- Only a drifted counter gets here; never let a negative reserved
    -- inflate available. The reconciliation reports the drift.
    redis.call('HSET', KEYS[3], l[1], '0')
  end
  if ARGV[2] == 'committed' then
    redis.call('HINCRBY', KEYS[2], l[1], '-' .. l[2])
  end
  units = units + tonumber(l[2])
end
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('SET', KEYS[6], ARGV[2] .. ' ' .. ARGV[5] .. ' ' .. string.format('%d', units), 'PX', ARGV[3])
return {'ok', units}
