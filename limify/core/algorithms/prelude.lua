-- Prelude of every Limify script: the algorithm's twin follows, then driver.lua.
-- See limify/core/algorithms/base.py for the contract all three implement.

-- State keys live at least this long, even when the algorithm says its state is
-- stale sooner: in client-clock mode a caller whose clock runs a little behind
-- the writer's must still find the state rather than a fresh limit.
local MIN_TTL_MS = 1000

-- What a refused consume saves, limit by limit (twin of AlgorithmSpec.on_refusal):
-- nil for algorithms that save nothing then; a wrapper chunk (penalty.lua) sets it.
local on_refusal = nil

local function ttl_ms(ttl_us)
  return math.max(MIN_TTL_MS, math.ceil(ttl_us / 1000))
end

-- Most states are `count` numbers kept in one string key as "<a>:<b>[:<c>]"; the
-- Python codecs (limify/core/algorithms/codecs.py) write and read the same text.
local function get_numbers(key, count)
  local raw = redis.call('GET', key)
  if not raw then return nil end
  local numbers, from = {}, 1
  for i = 1, count do
    local sep = string.find(raw, ':', from, true)
    if (sep == nil) ~= (i == count) then return nil end
    local number = tonumber(string.sub(raw, from, (sep or 0) - 1))
    if not number then return nil end
    numbers[i] = number
    from = (sep or 0) + 1
  end
  return numbers
end

-- The state of algorithms whose Lua reads the key as it goes (sorted sets): a handle.
local function load_handle(key)
  return {key = key}
end

local function get_pair(key)
  return get_numbers(key, 2)
end

-- Drop the key when its state is already stale (ttl_us <= 0); true if it did.
local function drop_stale(key, ttl_us)
  if ttl_us > 0 then return false end
  redis.call('DEL', key)
  return true
end

-- Store `value` for ttl_us, or drop the key when the state is already stale.
local function set_or_drop(key, value, ttl_us)
  if not drop_stale(key, ttl_us) then
    redis.call('SET', key, value, 'PX', ttl_ms(ttl_us))
  end
end

-- A save writing a state of integers as string.format(fmt, state[1], state[2], ...).
local function save_as(fmt)
  return function(key, state, ttl_us)
    set_or_drop(key, ttl_us > 0 and string.format(fmt, unpack(state)), ttl_us)
  end
end

-- A bucket's (level, stamp): its state's, or (empty, now) when it has none.
local function bucket_of(state, empty, now)
  if state == nil then return empty, now end
  return state[1], state[2]
end

-- "<float>:<int>": the state of the token and leaky buckets (level or tokens, stamp).
local save_level = save_as('%.17g:%d')

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
