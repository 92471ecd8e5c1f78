//! The Lua scripts a lock manager runs on every node. Each is one round trip and runs
//! atomically on its node, which is what lets a node keep its queue, its key and its fence
//! counter consistent without a lock of its own.

/// Per node: queue the waiter at its place (or keep it there), take the key if it is free and
/// the waiter is the queue's head, and always bump the fence counter. Answers the counter, as a
/// negative number when the key was not taken. The place stays after a grant (the waiter's
/// acquisition may still fail to win a majority, and must then keep its place on every node);
/// it is removed with the holder's release (RELEASE), when the waiter gives up (DEQUEUE), or
/// when it lapses.
///
/// KEYS: the lock, the fence counter, the queue (waiters by arrival), the queue's liveness (when
/// each waiter's place lapses). ARGV: the lock value, the lease (ms), the waiter's arrival (its
/// place), how long the place lives without an attempt (ms), the waiter's id. A head whose place
/// lapsed (its waiter gave up or vanished) is dropped, so a dead waiter holds nobody up for
/// long; the queue's keys expire a minute after their last use.
pub(super) const ACQUIRE: &str = r"
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
while true do
  local h = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  if not h or h == ARGV[5] then break end
  if tonumber(redis.call('HGET', KEYS[4], h) or '0') >= now then break end
  redis.call('ZREM', KEYS[3], h)
  redis.call('HDEL', KEYS[4], h)
end
redis.call('ZADD', KEYS[3], 'NX', ARGV[3], ARGV[5])
redis.call('HSET', KEYS[4], ARGV[5], now + tonumber(ARGV[4]))
redis.call('PEXPIRE', KEYS[3], 60000)
redis.call('PEXPIRE', KEYS[4], 60000)
local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
local t = redis.call('INCR', KEYS[2])
if head == ARGV[5] and redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return t
end
return -t
";

/// Per node: take a waiter's place out of a key's queue (it was served, or gave up).
pub(super) const DEQUEUE: &str = r"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
";

/// Per node: delete the key only if it still holds our value, and announce it on ARGV[2] when
/// a waiter is queued for it (KEYS[2], its queue): an uncontended release announces nothing.
pub(super) const RELEASE: &str = r"
if ARGV[3] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('HDEL', KEYS[3], ARGV[3])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('PUBLISH', ARGV[2], KEYS[1])
  end
  return 1
end
return 0
";

/// Per node: raise the fence counter to at least ARGV[1].
pub(super) const RAISE: &str = r"
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
if v < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
";
