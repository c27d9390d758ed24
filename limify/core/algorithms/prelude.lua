-- Prelude of every Limify script: the algorithm's twin follows, then driver.lua.
-- See limify/core/algorithms/base.py for the contract all three implement.

-- State keys live at least this long, even when the algorithm says its state is
-- stale sooner: in client-clock mode a caller whose clock runs a little behind
-- the writer's must still find the state rather than a fresh limit.
local MIN_TTL_MS = 1000

local function ttl_ms(ttl_us)
  return math.max(MIN_TTL_MS, math.ceil(ttl_us / 1000))
end
