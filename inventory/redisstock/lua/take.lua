-- Count an order against a customer's purchase limit of a promoted SKU.
--
-- KEYS: 1 the (promotion, SKU, customer) counter: field 't' = total, 'o:<order>' = its quantity
-- ARGV: 1 order id, 2 qty, 3 limit, 4 end of the promotion in ms (the key expires then)
-- Returns {'ok'} | {'dup'} | {'exceeded', total}
local f = 'o:' .. ARGV[1]
if redis.call('HEXISTS', KEYS[1], f) == 1 then
  return {'dup'}
end
local total = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
if total + tonumber(ARGV[2]) > tonumber(ARGV[3]) then
  return {'exceeded', total}
end
redis.call('HINCRBY', KEYS[1], 't', ARGV[2])
redis.call('HSET', KEYS[1], f, ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
return {'ok'}
