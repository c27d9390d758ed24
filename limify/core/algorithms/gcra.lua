-- GCRA. Twin of limify/core/algorithms/gcra.py (transition, refund): the same
-- exact integer arithmetic, so both give identical decisions.
-- State at a key: the theoretical arrival time as the string "<whole_us>+<k>/<limit>"
-- (whole microseconds plus k / limit, 0 <= k < limit), expiring when it passes.

local TWO52 = 4503599627370496

-- floor(a * b / m) and a * b mod m, exactly, for integers 0 <= a, 0 <= b < m < 2^52
-- and a * b / m < 2^53.
local function muldivmod(a, b, m)
  local product = a * b
  if product < TWO52 then -- exact: a double holds every integer below 2^53
    local q = math.floor(product / m)
    local rem = product - q * m
    if rem < 0 then
      q, rem = q - 1, rem + m
    elseif rem >= m then
      q, rem = q + 1, rem - m
    end
    return q, rem
  end
  -- Long multiplication, one bit of a at a time: rem < m keeps every step exact.
  local q, rem, bit = 0, 0, 1
  while bit * 2 <= a do bit = bit * 2 end
  while bit >= 1 do
    q, rem = q * 2, rem * 2
    if rem >= m then q, rem = q + 1, rem - m end
    if a >= bit then
      a = a - bit
      rem = rem + b
      if rem >= m then q, rem = q + 1, rem - m end
    end
    bit = bit / 2
  end
  return q, rem
end

local function arrival(state, limit)
  if state[3] ~= limit then
    if state[2] > 0 then return state[1] + 1, 0 end
    return state[1], 0
  end
  return state[1], state[2]
end

local function add(whole, k, cost, limit, period, sign)
  local q, r = muldivmod(period, 1, limit) -- T = q + r / limit
  local carry, part = muldivmod(cost, r, limit)
  whole = whole + sign * (cost * q + carry)
  k = k + sign * part
  if k >= limit then
    k = k - limit
    whole = whole + 1
  elseif k < 0 then
    k = k + limit
    whole = whole - 1
  end
  return whole, k
end

local function ceil_ahead(whole, k, now)
  if k > 0 then return whole + 1 - now end
  return whole - now
end

local function fits(whole, k, now, cost, limit, period)
  local w, f = add(whole, k, cost, limit, period, 1)
  return ceil_ahead(w, f, now) <= period
end

local function room(whole, k, now, limit, period)
  local ahead = (whole - now) + k / limit
  local guess = math.min(limit, math.max(0, math.floor((period - ahead) * limit / period)))
  while guess < limit and fits(whole, k, now, guess + 1, limit, period) do
    guess = guess + 1
  end
  while guess > 0 and not fits(whole, k, now, guess, limit, period) do
    guess = guess - 1
  end
  return guess
end

local function load(key)
  local raw = redis.call('GET', key)
  if not raw then return nil end
  local whole, k, limit = string.match(raw, '^(%d+)%+(%d+)/(%d+)$')
  if not whole then return nil end
  return {tonumber(whole), tonumber(k), tonumber(limit)}
end

local save = save_as('%d+%d/%d')

local function transition(state, now, plan, cost, token)
  local limit, period = plan[1], plan[2]
  local base_whole, base_k = now, 0
  if state ~= nil then
    local whole, k = arrival(state, limit)
    if whole >= now then
      base_whole, base_k = whole, k
    end
  end
  local new_whole, new_k = add(base_whole, base_k, cost, limit, period, 1)
  local reach = ceil_ahead(new_whole, new_k, now)
  if reach <= period then
    local left = room(new_whole, new_k, now, limit, period)
    return true, left, reach, 0, {new_whole, new_k, limit}, reach
  end
  local reset = ceil_ahead(base_whole, base_k, now)
  return false, room(base_whole, base_k, now, limit, period), reset, reach - period, state, reset
end

local function refund(state, now, plan, cost, token)
  if state == nil then return nil, 0 end
  local limit, period = plan[1], plan[2]
  local whole, k = arrival(state, limit)
  whole, k = add(whole, k, cost, limit, period, -1)
  local ttl = ceil_ahead(whole, k, now)
  if ttl <= 0 then return nil, 0 end
  return {whole, k, limit}, ttl
end
