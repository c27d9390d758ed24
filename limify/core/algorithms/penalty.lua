-- Penalties. Twin of limify/core/algorithms/penalty.py: concatenated after an
-- algorithm's twin, it wraps that algorithm's load, save, transition and refund
-- so that limits whose last parameter is 1 are penalties: {limit (refusals),
-- period_us, block_us, ..., 1}. State at a penalty key: the string
-- "p<start_us>:<refusals>:<until_us>".

local inner_load, inner_save, inner_transition, inner_refund = load, save, transition, refund
local PENALTY_ROOM = 1000000000000000

local function is_penalty(plan)
  return plan[#plan] == 1
end

local function penalty_ttl(state, now, plan)
  if state == nil then return 0 end
  return math.max(state[3] - now, state[1] + plan[2] - now)
end

local function load(key, plan)
  if not is_penalty(plan) then return inner_load(key, plan) end
  local raw = redis.call('GET', key)
  if not raw or string.sub(raw, 1, 1) ~= 'p' then return nil end
  local start, refusals, finish = string.match(raw, '^p(%-?%d+):(%-?%d+):(%-?%d+)$')
  if not start then return nil end
  return {tonumber(start), tonumber(refusals), tonumber(finish)}
end

local function save(key, state, ttl_us, plan)
  if not is_penalty(plan) then return inner_save(key, state, ttl_us, plan) end
  set_or_drop(key, ttl_us > 0 and state ~= nil and string.format('p%d:%d:%d', state[1], state[2], state[3]), ttl_us)
end

local function transition(state, now, plan, cost, token)
  if not is_penalty(plan) then return inner_transition(state, now, plan, cost, token) end
  local ttl = penalty_ttl(state, now, plan)
  if state ~= nil and state[3] > now then
    local left = state[3] - now
    return false, 0, left, left, state, ttl
  end
  return true, PENALTY_ROOM, 0, 0, state, ttl
end

local function refund(state, now, plan, cost, token)
  if not is_penalty(plan) then return inner_refund(state, now, plan, cost, token) end
  return state, penalty_ttl(state, now, plan)
end

local inner_on_refusal = on_refusal
on_refusal = function(state, now, plan, cost, token)
  if not is_penalty(plan) then
    if inner_on_refusal ~= nil then return inner_on_refusal(state, now, plan, cost, token) end
    return nil, nil
  end
  if state ~= nil and state[3] > now then return nil, nil end
  local start, refusals = now, 1
  if state ~= nil and now < state[1] + plan[2] then
    start, refusals = state[1], state[2] + 1
  end
  local counted
  if refusals >= plan[1] then
    counted = {now, 0, now + plan[3]}
  else
    counted = {start, refusals, 0}
  end
  return counted, penalty_ttl(counted, now, plan)
end
