-- Leaky bucket (meter). Twin of limify/core/algorithms/leaky_bucket.py (transition,
-- refund): the same arithmetic in the same order, so both give identical decisions.
-- State at a key: the string "<level>:<last_us>", expiring once the bucket is empty.

local function level_at(level, last, at, rate)
  if at <= last then return level end
  return math.max(0, level - (at - last) * rate)
end

local function drain_wait(level, last, now, target, rate)
  if level_at(level, last, now, rate) <= target then return 0 end
  local start = math.max(now, last)
  local wait = (start - now) + math.ceil((level_at(level, last, start, rate) - target) / rate)
  local step = 1
  while level_at(level, last, now + wait, rate) > target do
    wait = wait + step
    step = step * 2
  end
  while wait > 1 and level_at(level, last, now + wait - 1, rate) <= target do
    wait = wait - 1
  end
  return wait
end

local function room(current, limit)
  local guess = math.min(limit, math.max(0, math.floor(limit - current)))
  while guess < limit and current <= limit - (guess + 1) do
    guess = guess + 1
  end
  while guess > 0 and current > limit - guess do
    guess = guess - 1
  end
  return guess
end

local load, save = get_pair, save_level

local function transition(state, now, plan, cost, token)
  local limit, period = plan[1], plan[2]
  local rate = limit / period
  local level, last = bucket_of(state, 0, now)
  local current = level_at(level, last, now, rate)
  if current <= limit - cost then
    local filled = current + cost
    local stamp = math.max(last, now)
    local reset = drain_wait(filled, stamp, now, 0, rate)
    return true, room(filled, limit), reset, 0, {filled, stamp}, reset
  end
  local retry = drain_wait(level, last, now, limit - cost, rate)
  local reset = drain_wait(level, last, now, 0, rate)
  return false, room(current, limit), reset, retry, state, reset
end

local function refund(state, now, plan, cost, token)
  if state == nil then return nil, 0 end
  local rate = plan[1] / plan[2]
  local level, last = state[1], state[2]
  local stamp = math.max(last, now)
  local lowered = math.max(0, level_at(level, last, stamp, rate) - cost)
  return {lowered, stamp}, drain_wait(lowered, stamp, now, 0, rate)
end
