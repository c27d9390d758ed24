-- Window counter shared by fixed_window.lua and quota.lua, which each define
-- `window(at, plan)` above it. Twin of the counter in limify/core/algorithms/
-- fixed_window.py (transition, refund): integer arithmetic below 2^53, so both
-- give identical decisions.
-- State at a key: the string "<window_start_us>:<count>", expiring at the window's end.

local load, save = get_pair, save_as('%d:%d')

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
  if state[1] ~= start then return nil, 0 end
  -- A call counted in an earlier window is not in this one's count.
  local admitted = admission_of(token)
  if admitted ~= nil and window(admitted, plan) ~= start then return state, finish - now end
  local count = state[2] - cost
  if count <= 0 then return nil, 0 end
  return {start, count}, finish - now
end
