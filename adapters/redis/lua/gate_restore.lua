-- Records a holder the gate lost (reconciliation). KEYS: meta hash, holder set, holders'
-- request tokens. ARGV: user id. Answers 1 if recorded (0: already a holder, or none left).
-- A restored holder has no request token: any reserve of theirs answers "already issued".
local remaining = redis.call('HGET', KEYS[1], 'remaining')
if not remaining or tonumber(remaining) <= 0 then return 0 end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HINCRBY', KEYS[1], 'remaining', -1)
redis.call('HINCRBY', KEYS[1], 'restores', 1)
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
