-- Concurrency limit. Twin of limify/core/algorithms/concurrency.py (transition,
-- refund): the same decisions, to the microsecond, on integers below 2**53.
--
-- State at a key: one sorted set, so that a call touches only the members it needs
-- (O(log n) per call, plus the expired leases it drops), however many are held:
--   "L" .. token   score = the lease's expiry (us, > 0)
--   "C" .. token   score = -cost, present only when the lease's cost is above 1
--   "H"            score = -(total cost of every lease stored, expired ones included)
-- Scores of leases are positive and the others negative, so score ranges from 0 up
-- select leases only. The key expires with its last lease (never under a second).
--
-- `load` returns a handle ({key = ...}); `transition` and `refund` only read
-- through it and return a handle carrying the writes, which `save` applies. The
-- driver saves a refund before running `transition` on it, so reads always see
-- the state the Python twin would hold.

local CHUNK = 1000  -- members per ZREM: stays far below Lua's unpack limit

local function num(x)
  return string.format('%.17g', x)
end

local function cost_of(key, token)
  local c = redis.call('ZSCORE', key, 'C' .. token)
  if c then return -tonumber(c) end
  return 1
end

-- Members of the leases expired at `now` (expiry <= now), and the cost they hold.
local function expired_leases(key, now)
  local members = redis.call('ZRANGEBYSCORE', key, 0, num(now))
  local held = 0
  for i = 1, #members do
    held = held + cost_of(key, string.sub(members[i], 2))
  end
  return members, held
end

-- The latest expiry among the leases, the member `except` left out (0 if none).
-- Leases have the highest scores, so looking at the top two members is enough.
local function last_expiry(key, except)
  local top = redis.call('ZREVRANGE', key, 0, 1, 'WITHSCORES')
  for i = 1, #top, 2 do
    if top[i] ~= except then
      return math.max(0, tonumber(top[i + 1]))
    end
  end
  return 0
end

-- Everything a decision needs: the cost held by live leases, the token's live
-- cost, and the members of the expired leases (to drop on the next save).
local function survey(key, now, token)
  local held_raw = redis.call('ZSCORE', key, 'H')
  local held = held_raw and -tonumber(held_raw) or 0
  local expired, expired_cost = expired_leases(key, now)
  local own = 0
  local mine = redis.call('ZSCORE', key, 'L' .. token)
  if mine and tonumber(mine) > now then own = cost_of(key, token) end
  return held - expired_cost, own, expired
end

local load = load_handle

local function save(key, state, ttl_us)
  if drop_stale(key, ttl_us) then return end
  local drop = state.drop
  if drop then
    for first = 1, #drop, CHUNK do
      redis.call('ZREM', key, unpack(drop, first, math.min(#drop, first + CHUNK - 1)))
    end
  end
  local add = state.add
  if add then
    redis.call('ZADD', key, num(add.expiry), 'L' .. add.token)
    if add.cost > 1 then  -- (the old cost member, if any, was dropped above)
      redis.call('ZADD', key, num(-add.cost), 'C' .. add.token)
    end
  end
  redis.call('ZADD', key, num(-state.held), 'H')
  redis.call('PEXPIRE', key, ttl_ms(ttl_us))
end

-- The writes that remove the expired leases and `token`'s lease.
local function dropping(expired, token)
  local drop = {'L' .. token, 'C' .. token}
  for i = 1, #expired do
    drop[#drop + 1] = expired[i]
    drop[#drop + 1] = 'C' .. string.sub(expired[i], 2)
  end
  return drop
end

local function transition(state, now, plan, cost, token)
  local key = state.key
  local limit, period = plan[1], plan[2]
  local in_flight, own, expired = survey(key, now, token)
  local others = in_flight - own
  if cost <= limit and others + cost <= limit then
    local expiry = now + period
    local reset = math.max(expiry, last_expiry(key, 'L' .. token)) - now
    local new_state = {
      key = key,
      drop = dropping(expired, token),
      add = {token = token, cost = cost, expiry = expiry},
      held = others + cost,
    }
    return true, limit - others - cost, reset, 0, new_state, reset
  end
  local reset = math.max(0, last_expiry(key, nil) - now)
  local retry = period
  if cost <= limit then
    -- Walk the other live leases by expiry until enough of them are gone, in
    -- growing batches: each lease holds at least 1, so need - freed + 1 members
    -- (one may be the caller's own) always suffice.
    local need = others + cost - limit
    local freed = 0
    local offset = 0
    local size = 16
    local mine = 'L' .. token
    while freed < need do
      local batch = redis.call('ZRANGEBYSCORE', key, '(' .. num(now), '+inf', 'WITHSCORES',
        'LIMIT', offset, math.min(size, need - freed + 1))
      if #batch == 0 then break end  -- not reached: the other leases hold at least `need`
      for i = 1, #batch, 2 do
        if batch[i] ~= mine then
          freed = freed + cost_of(key, string.sub(batch[i], 2))
          if freed >= need then
            retry = tonumber(batch[i + 1]) - now
            break
          end
        end
      end
      offset = offset + #batch / 2
      size = size * 2
    end
  end
  return false, math.max(0, limit - in_flight), reset, retry, state, reset
end

local function refund(state, now, plan, cost, token)
  local key = state.key
  local in_flight, own, expired = survey(key, now, token)
  local last = last_expiry(key, 'L' .. token)
  local released = {key = key, drop = dropping(expired, token), held = in_flight - own}
  if last <= now then return released, 0 end
  return released, last - now
end
