-- KEYS: meta hash, holder set, holders' tokens. Answers {quantity, remaining, holders} or {} without a gate.
local g = redis.call('HMGET', KEYS[1], 'quantity', 'remaining')
if not g[1] then return {} end
return {tonumber(g[1]), tonumber(g[2]), redis.call('SCARD', KEYS[2])}
