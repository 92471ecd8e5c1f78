-- One atomic reserve. KEYS: meta hash, holder set. ARGV: user id, now (ms).
-- Answers 0 reserved, 1 sold out, 2 already issued, 3 not initialised, 4 outside the window.
local g = redis.call('HMGET', KEYS[1], 'remaining', 'from', 'until')
if not g[1] then return 3 end
local now = tonumber(ARGV[2])
if (g[2] ~= '' and now < tonumber(g[2])) or (g[3] ~= '' and now >= tonumber(g[3])) then
  return 4
end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 2 end
if tonumber(g[1]) <= 0 then return 1 end
redis.call('HINCRBY', KEYS[1], 'remaining', -1)
redis.call('HINCRBY', KEYS[1], 'reserves', 1)
redis.call('SADD', KEYS[2], ARGV[1])
return 0
