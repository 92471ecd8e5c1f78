-- Creates a gate the server lost, with the holders the store knows, unless it exists: one atomic
-- step, so no reserve ever sees the rebuilt gate without its holders.
-- KEYS: meta hash, holder set, holders' request tokens (dropped: the holders come from the
-- store, not from a request). ARGV: quantity, valid_from ms or '', valid_until ms or '', then
-- the holders' user ids. Answers 1 if created.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
for i = 4, #ARGV, 1000 do
  redis.call('SADD', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local held = redis.call('SCARD', KEYS[2])
local remaining = tonumber(ARGV[1]) - held
if remaining < 0 then remaining = 0 end
redis.call('HSET', KEYS[1], 'quantity', ARGV[1], 'remaining', remaining, 'from', ARGV[2],
  'until', ARGV[3], 'reserves', 0, 'rollbacks', 0, 'restores', held)
return 1
