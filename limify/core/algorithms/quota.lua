-- Quota. Twin of limify/core/algorithms/quota.py (transition), whose counter
-- is fixed_window.py's: the code below mirrors fixed_window.lua with calendar
-- windows. Integer arithmetic below 2^53, so both give identical decisions.
-- Parameters per limit: limit, period_us, 1 for calendar months else 0.
-- State at a key: the string "<window_start_us>:<count>", expiring at the window's end.

local DAY_US = 86400000000
local EPOCH_SHIFT = 719468
local ERA_DAYS = 146097

-- Floor division, exact for integers below 2^53.
local function fdiv(a, b)
  return math.floor(a / b)
end

local function days_from_civil(year, month, day)
  local march_year = year
  if month <= 2 then march_year = year - 1 end
  local era = fdiv(march_year, 400)
  local year_of_era = march_year - era * 400
  local month_from_march = month + 9
  if month > 2 then month_from_march = month - 3 end
  local day_of_year = fdiv(153 * month_from_march + 2, 5) + day - 1
  local day_of_era = year_of_era * 365 + fdiv(year_of_era, 4) - fdiv(year_of_era, 100) + day_of_year
  return era * ERA_DAYS + day_of_era - EPOCH_SHIFT
end

local function civil_from_days(days)
  local shifted = days + EPOCH_SHIFT
  local era = fdiv(shifted, ERA_DAYS)
  local day_of_era = shifted - era * ERA_DAYS
  local year_of_era = fdiv(
    day_of_era - fdiv(day_of_era, 1460) + fdiv(day_of_era, 36524) - fdiv(day_of_era, ERA_DAYS - 1), 365)
  local day_of_year = day_of_era - (365 * year_of_era + fdiv(year_of_era, 4) - fdiv(year_of_era, 100))
  local month_from_march = fdiv(5 * day_of_year + 2, 153)
  local day = day_of_year - fdiv(153 * month_from_march + 2, 5) + 1
  local month = month_from_march - 9
  if month_from_march < 10 then month = month_from_march + 3 end
  local year = year_of_era + era * 400
  if month <= 2 then year = year + 1 end
  return year, month, day
end

-- The quota window holding `at`: a UTC calendar month, or an epoch-aligned period.
local function window(at, plan)
  if plan[3] == 1 then
    local days = fdiv(at, DAY_US)
    local year, month, day = civil_from_days(days)
    local first = days - (day - 1)
    local following = days_from_civil(year + fdiv(month, 12), month % 12 + 1, 1)
    return first * DAY_US, following * DAY_US
  end
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
