-- Shared driver, twin of limify/core/algorithms/base.py (run_limits): runs the
-- algorithm's functions (defined above this chunk) over every limit of one
-- call. Data arrives only through KEYS and ARGV:
--   KEYS[i]    the state key of limit i
--   ARGV[1]    now in microseconds, or "" to read the server clock (TIME)
--   ARGV[2]    cost
--   ARGV[3]    mode: "1" consume (all or nothing), "0" peek, "2" refund then peek
--   ARGV[4]    w, the number of parameters per limit
--   ARGV[5]    token: an opaque string naming the call ("" when unused)
--   ARGV[6..]  limit i's parameters at 5 + (i-1)*w + 1 .. 5 + i*w
-- load(key, plan) and save(key, state, ttl_us, plan) get the limit's parameters too
-- (algorithms that keep one kind of state ignore them).
-- Returns {allowed 0/1, remaining, reset_us, retry_us, index of the deciding limit (0-based),
-- now_us (the instant decided at)}.

local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local cost = tonumber(ARGV[2])
local mode = ARGV[3]
local width = tonumber(ARGV[4])
local token = ARGV[5]
if #KEYS == 1 and mode ~= '2' then
  -- One limit, the common case: one step and no tables but the plan's (as run_limits does).
  local plan = {}
  for j = 1, width do
    plan[j] = tonumber(ARGV[5 + j])
  end
  local state = load(KEYS[1], plan)
  local allowed, remaining, reset, retry, new_state, ttl = transition(state, now, plan, cost, token)
  if mode == '1' then
    if allowed then
      save(KEYS[1], new_state, ttl, plan)
    elseif on_refusal ~= nil then
      local refused_state, refused_ttl = on_refusal(state, now, plan, cost, token)
      if refused_ttl ~= nil then save(KEYS[1], refused_state, refused_ttl, plan) end
    end
  end
  return {allowed and 1 or 0, remaining, reset, retry, 0, now}
end
local steps = {}
local plans, states = {}, {}
local pick = 1
local all_allowed = true
for i = 1, #KEYS do
  local plan = {}
  for j = 1, width do
    plan[j] = tonumber(ARGV[5 + (i - 1) * width + j])
  end
  plans[i] = plan
  local state = load(KEYS[i], plan)
  if mode == '2' then
    local refunded, refunded_ttl = refund(state, now, plan, cost, token)
    save(KEYS[i], refunded, refunded_ttl, plan)
    state = refunded
  end
  states[i] = state
  local allowed, remaining, reset, retry, new_state, ttl = transition(state, now, plan, cost, token)
  steps[i] = {allowed, remaining, reset, retry, new_state, ttl}
  if not allowed then all_allowed = false end
  if i > 1 then
    -- A refusal beats an admission; the longest wait among refusals, the
    -- smallest remaining among admissions; ties keep the earlier limit.
    local best = steps[pick]
    local better
    if allowed ~= best[1] then
      better = not allowed
    elseif not allowed then
      better = retry > best[4]
    else
      better = remaining < best[2]
    end
    if better then pick = i end
  end
end
if all_allowed and mode == '1' then
  for i = 1, #KEYS do
    save(KEYS[i], steps[i][5], steps[i][6], plans[i])
  end
elseif mode == '1' and on_refusal ~= nil then
  -- A refused consume saves only what on_refusal answers (twin of _refusal_writes in base.py).
  for i = 1, #KEYS do
    local refused_state, refused_ttl = on_refusal(states[i], now, plans[i], cost, token)
    if refused_ttl ~= nil then save(KEYS[i], refused_state, refused_ttl, plans[i]) end
  end
end
local best = steps[pick]
return {all_allowed and 1 or 0, best[2], best[3], best[4], pick - 1, now}
