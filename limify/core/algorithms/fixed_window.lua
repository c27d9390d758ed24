-- Fixed window. Twin of limify/core/algorithms/fixed_window.py (transition):
-- integer arithmetic below 2^53, so both give identical decisions.
-- State at a key: the string "<window_start_us>:<count>", expiring at the window's end.

-- The window holding `at`, aligned to multiples of the period. Lua's % is
-- a - floor(a / b) * b, exact for integers below 2^53.
local function window(at, plan)
  local period = plan[2]
  local start = at - at % period
  return start, start + period
end

local function load(key)
  local raw = redis.call('GET', key)
  if not raw then return nil end
  local sep = string.find(raw, ':', 1, true)
  if not sep then return nil end
  local start = tonumber(string.sub(raw, 1, sep - 1))
  local count = tonumber(string.sub(raw, sep + 1))
  if not start or not count then return nil end
  return {start, count}
end

local function save(key, state, ttl_us)
  if ttl_us <= 0 then
    redis.call('DEL', key)
    return
  end
  local value = string.format('%d', state[1]) .. ':' .. string.format('%d', state[2])
  redis.call('SET', key, value, 'PX', ttl_ms(ttl_us))
end

local function transition(state, now, plan, cost, token)
  local at = now
  if state ~= nil then at = math.max(now, state[1]) end
  local start, finish = window(at, plan)
  local count = 0
  if state ~= nil and state[1] == start then count = state[2] end
  local limit = plan[1]
  local left = finish - now
  if count + cost <= limit then
    count = count + cost
    return true, limit - count, left, 0, {start, count}, left
  end
  return false, limit - count, left, left, state, left
end

local function refund(state, now, plan, cost, token)
  if state == nil then return nil, 0 end
  local start, finish = window(math.max(now, state[1]), plan)
  local count = 0
  if state[1] == start then count = state[2] - cost end
  if count <= 0 then return nil, 0 end
  return {start, count}, finish - now
end
