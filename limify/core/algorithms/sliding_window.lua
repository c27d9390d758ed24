-- Sliding window counter. Twin of limify/core/algorithms/sliding_window.py
-- (transition): the same arithmetic in the same order, so both give identical
-- decisions. State at a key: the string "<window_start_us>:<prev>:<cur>",
-- expiring when the counts stop mattering.

-- The state brought forward to the window holding `at` (at >= its stamp).
local function advance(state, at, period)
  local start = at - at % period
  if state == nil then return start, 0, 0 end
  if state[1] == start then return start, state[2], state[3] end
  if state[1] == start - period then return start, state[3], 0 end
  return start, 0, 0
end

local function weighted(prev, elapsed, period)
  return prev * ((period - elapsed) / period)
end

local function admits(state, at, period, limit, cost)
  local start, prev, cur = advance(state, at, period)
  return weighted(prev, at - start, period) + (cur + cost) <= limit
end

local function room(prev, cur, elapsed, period, limit)
  local w = weighted(prev, elapsed, period)
  local total = math.floor(limit - w)
  while total > 0 and w + total > limit do total = total - 1 end
  while w + (total + 1) <= limit do total = total + 1 end
  return math.max(0, total - cur)
end

local function first_admission(state, at, plan, cost)
  local limit, period = plan[1], plan[2]
  if cost > limit then return at + period end
  local start, prev, cur = advance(state, at, period)
  local lo, hi = at, start + 2 * period
  local guess
  if cur + cost <= limit then
    guess = start + math.ceil(period - (limit - cost - cur) / prev * period)
  else
    guess = start + period + math.ceil(period - (limit - cost) / cur * period)
  end
  guess = math.min(math.max(guess, lo + 1), hi)
  if admits(state, guess, period, limit, cost) then
    hi = guess
    if guess - 1 > lo and not admits(state, guess - 1, period, limit, cost) then lo = guess - 1 end
  else
    lo = guess
    if guess + 1 < hi and admits(state, guess + 1, period, limit, cost) then hi = guess + 1 end
  end
  while hi - lo > 1 do
    local mid = lo + math.floor((hi - lo) / 2)
    if admits(state, mid, period, limit, cost) then hi = mid else lo = mid end
  end
  return hi
end

local function reset_after(start, prev, cur, period, now)
  if cur > 0 then return start + 2 * period - now end
  if prev > 0 then return start + period - now end
  return 0
end

local function load(key)
  return get_numbers(key, 3)
end

local save = save_as('%d:%d:%d')

local function transition(state, now, plan, cost, token)
  local limit, period = plan[1], plan[2]
  local at = now
  if state ~= nil then at = math.max(now, state[1]) end
  local start, prev, cur = advance(state, at, period)
  local elapsed = at - start
  if weighted(prev, elapsed, period) + (cur + cost) <= limit then
    cur = cur + cost
    local reset = start + 2 * period - now
    return true, room(prev, cur, elapsed, period, limit), reset, 0, {start, prev, cur}, reset
  end
  local retry = first_admission(state, at, plan, cost) - now
  local reset = reset_after(start, prev, cur, period, now)
  return false, room(prev, cur, elapsed, period, limit), reset, retry, state, reset
end

local function refund(state, now, plan, cost, token)
  if state == nil then return nil, 0 end
  local period = plan[2]
  local start, prev, cur = advance(state, math.max(now, state[1]), period)
  local admitted = admission_of(token)
  local counted_in = start
  if admitted ~= nil then counted_in = admitted - admitted % period end
  if counted_in == start then
    cur = math.max(0, cur - cost)
  elseif counted_in == start - period then
    prev = math.max(0, prev - cost)
  end
  local ttl = reset_after(start, prev, cur, period, now)
  if ttl <= 0 then return nil, 0 end
  return {start, prev, cur}, ttl
end
