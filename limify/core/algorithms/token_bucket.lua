-- Token bucket. Twin of limify/core/algorithms/token_bucket.py (transition):
-- the same arithmetic in the same order, so both give identical decisions.
-- State at a key: the string "<tokens>:<last_us>", expiring once the bucket is full.

local function level(tokens, last, at, limit, rate)
  if at <= last then return tokens end
  return math.min(limit, tokens + (at - last) * rate)
end

local function wait_until(tokens, last, now, need, limit, rate, period)
  if need > limit then return period end
  if level(tokens, last, now, limit, rate) >= need then return 0 end
  local start = math.max(now, last)
  local wait = (start - now) + math.ceil((need - level(tokens, last, start, limit, rate)) / rate)
  while level(tokens, last, now + wait, limit, rate) < need do
    wait = wait + 1
  end
  while wait > 0 and level(tokens, last, now + wait - 1, limit, rate) >= need do
    wait = wait - 1
  end
  return wait
end

local load, save = get_pair, save_level

local function transition(state, now, plan, cost, token)
  local limit, period = plan[1], plan[2]
  local rate = limit / period
  local tokens, last = bucket_of(state, limit, now)
  local current = level(tokens, last, now, limit, rate)
  if current >= cost then
    local left = current - cost
    local stamp = math.max(last, now)
    local reset = wait_until(left, stamp, now, limit, limit, rate, period)
    return true, math.floor(left), reset, 0, {left, stamp}, reset
  end
  local retry = wait_until(tokens, last, now, cost, limit, rate, period)
  local reset = wait_until(tokens, last, now, limit, limit, rate, period)
  return false, math.floor(current), reset, retry, state, reset
end

local function refund(state, now, plan, cost, token)
  if state == nil then return nil, 0 end
  local limit, period = plan[1], plan[2]
  local rate = limit / period
  local tokens, last = state[1], state[2]
  local stamp = math.max(last, now)
  local lvl = math.min(limit, level(tokens, last, stamp, limit, rate) + cost)
  return {lvl, stamp}, wait_until(lvl, stamp, now, limit, limit, rate, period)
end
