-- Prelude of every Limify script: the algorithm's twin follows, then driver.lua.
-- See limify/core/algorithms/base.py for the contract all three implement.

-- State keys live at least this long, even when the algorithm says its state is
-- stale sooner: in client-clock mode a caller whose clock runs a little behind
-- the writer's must still find the state rather than a fresh limit.
local MIN_TTL_MS = 1000

local function ttl_ms(ttl_us)
  return math.max(MIN_TTL_MS, math.ceil(ttl_us / 1000))
end

-- Most states are two numbers kept in one string key as "<a>:<b>".
local function get_pair(key)
  local raw = redis.call('GET', key)
  if not raw then return nil end
  local sep = string.find(raw, ':', 1, true)
  if not sep then return nil end
  local a = tonumber(string.sub(raw, 1, sep - 1))
  local b = tonumber(string.sub(raw, sep + 1))
  if not a or not b then return nil end
  return {a, b}
end

-- Store `value` for ttl_us, or drop the key when the state is already stale.
local function set_or_drop(key, value, ttl_us)
  if ttl_us <= 0 then
    redis.call('DEL', key)
  else
    redis.call('SET', key, value, 'PX', ttl_ms(ttl_us))
  end
end

-- Twin of admission_of in base.py: a refund's token "<admitted_us>:<call token>"
-- split into its parts; any other token gives (nil, token).
local function admission_of(token)
  local sep = string.find(token, ':', 1, true)
  if sep and sep > 1 then
    local stamp = string.sub(token, 1, sep - 1)
    if #stamp <= 16 and not string.find(stamp, '[^0-9]') then
      local admitted = tonumber(stamp)
      if admitted < 9007199254740992 then return admitted, string.sub(token, sep + 1) end
    end
  end
  return nil, token
end
