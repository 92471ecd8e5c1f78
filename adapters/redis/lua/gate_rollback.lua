-- Gives a holder's reservation back. KEYS: meta hash, holder set, holders' request tokens.
-- ARGV: user id. Answers 1 if the user held one.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('SREM', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'remaining', 1)
redis.call('HINCRBY', KEYS[1], 'rollbacks', 1)
return 1
