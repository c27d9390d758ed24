-- GCRA. Twin of limify/core/algorithms/gcra.py (transition, refund): the same
-- arithmetic in the same order, so both give identical decisions.
-- State at a key: the theoretical arrival time as the string "<whole_us>+<fraction>"
-- (whole microseconds plus a fraction in [0, 1)), expiring when that time passes.

local function shift(whole, fraction, amount)
  local x = fraction + amount
  local carry = math.floor(x)
  fraction = x - carry
  if fraction >= 1 then
    carry = carry + 1
    fraction = 0
  end
  return whole + carry, fraction
end

local function ceil_ahead(whole, fraction, now)
  if fraction > 0 then return whole + 1 - now end
  return whole - now
end

local function increment(cost, interval, period)
  return math.min(period, cost * interval)
end

local function fits(whole, fraction, now, cost, interval, period)
  local w, f = shift(whole, fraction, increment(cost, interval, period))
  return ceil_ahead(w, f, now) <= period
end

local function room(whole, fraction, now, limit, interval, period)
  local ahead = (whole - now) + fraction
  local guess = math.min(limit, math.max(0, math.floor((period - ahead) / interval)))
  while guess < limit and fits(whole, fraction, now, guess + 1, interval, period) do
    guess = guess + 1
  end
  while guess > 0 and not fits(whole, fraction, now, guess, interval, period) do
    guess = guess - 1
  end
  return guess
end

local function load(key)
  local raw = redis.call('GET', key)
  if not raw then return nil end
  local sep = string.find(raw, '+', 1, true)
  if not sep then return nil end
  local whole = tonumber(string.sub(raw, 1, sep - 1))
  local fraction = tonumber(string.sub(raw, sep + 1))
  if not whole or not fraction then return nil end
  return {whole, fraction}
end

local function save(key, state, ttl_us)
  if ttl_us <= 0 then
    redis.call('DEL', key)
    return
  end
  local value = string.format('%d', state[1]) .. '+' .. string.format('%.17g', state[2])
  redis.call('SET', key, value, 'PX', ttl_ms(ttl_us))
end

local function transition(state, now, plan, cost, token)
  local limit, period = plan[1], plan[2]
  local interval = period / limit
  local bw, bf = now, 0
  if state ~= nil and state[1] >= now then
    bw, bf = state[1], state[2]
  end
  local whole, fraction = shift(bw, bf, increment(cost, interval, period))
  local reach = ceil_ahead(whole, fraction, now)
  if reach <= period then
    local left = room(whole, fraction, now, limit, interval, period)
    return true, left, reach, 0, {whole, fraction}, reach
  end
  local reset = ceil_ahead(bw, bf, now)
  return false, room(bw, bf, now, limit, interval, period), reset, reach - period, state, reset
end

local function refund(state, now, plan, cost, token)
  if state == nil then return nil, 0 end
  local period = plan[2]
  local interval = period / plan[1]
  local whole, fraction = shift(state[1], state[2], -increment(cost, interval, period))
  local ttl = ceil_ahead(whole, fraction, now)
  if ttl <= 0 then return nil, 0 end
  return {whole, fraction}, ttl
end
