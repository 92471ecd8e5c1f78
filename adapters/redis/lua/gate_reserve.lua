-- One atomic reserve. KEYS: meta hash, holder set, holders' request tokens (hash).
-- ARGV: user id, now (ms), the request's token.
-- Answers 0 reserved, 1 sold out, 2 already issued, 3 not initialised, 4 outside the window.
-- A run again of the same request (same token: the client resent it after a connection error)
-- answers 0 again and takes nothing; another request of a holder answers 2.
local g = redis.call('HMGET', KEYS[1], 'remaining', 'from', 'until')
if not g[1] then return 3 end
local now = tonumber(ARGV[2])
if (g[2] ~= '' and now < tonumber(g[2])) or (g[3] ~= '' and now >= tonumber(g[3])) then
  return 4
end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  if redis.call('HGET', KEYS[3], ARGV[1]) == ARGV[3] then return 0 end
  return 2
end
if tonumber(g[1]) <= 0 then return 1 end
redis.call('HINCRBY', KEYS[1], 'remaining', -1)
redis.call('HINCRBY', KEYS[1], 'reserves', 1)
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
return 0
