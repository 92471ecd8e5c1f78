-- Creates a coupon's gate unless it exists. KEYS: meta hash, holder set, holders' tokens.
-- ARGV: quantity, valid_from ms or '', valid_until ms or ''. Answers 1 if created.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'quantity', ARGV[1], 'remaining', ARGV[1], 'from', ARGV[2],
  'until', ARGV[3], 'reserves', 0, 'rollbacks', 0, 'restores', 0)
return 1
