-- Pause marker for outbound clients; Python twin: InMemoryAdapter.hold in limify/core/memory_adapter.py.
-- Not an algorithm: a key whose remaining TTL is how long callers must hold back.
-- KEYS[1]: the pause key. ARGV[1]: pause length in ms (0 only reads).
-- Returns the pause left in ms, 0 when there is none. A pause only ever grows:
-- a shorter Retry-After never cuts a longer one short.
local left = redis.call('PTTL', KEYS[1])
local want = tonumber(ARGV[1])
if want > 0 and want > left then
  redis.call('SET', KEYS[1], '1', 'PX', want)
  return want
end
if left < 0 then
  return 0
end
return left
