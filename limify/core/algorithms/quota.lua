-- Quota. Twin of limify/core/algorithms/quota.py: this file gives the calendar
-- `window`; window_counter.lua (concatenated after it) counts, as for the fixed
-- window. Integer arithmetic below 2^53, so both give identical decisions.
-- Parameters per limit: limit, period_us, 1 for calendar months else 0.

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
