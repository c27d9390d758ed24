-- Sliding log. Twin of limify/core/algorithms/sliding_log.py (transition, refund):
-- the same integer arithmetic, so both give identical decisions.
-- State at a key: a sorted set with one member per admitted call, score = stamp in
-- microseconds, member "<cum, zero-padded to 16 digits>:<cost>[:<token>]", expiring
-- when the newest entry ages out. Zero padding makes members sort by cum among equal
-- stamps; the token, when the call had one, lets its refund find its own entry.
-- The set is never read whole: load() returns a handle, transition() and refund()
-- read what they need (O(log n)), and the state they return records only the
-- changes, which save() applies.

local REBASE_AT = 1125899906842624 -- 2^50, twin of REBASE_AT in the Python

local function us(n)
  -- Numbers passed to redis.call become strings with 14 significant digits; send
  -- timestamps as exact integers instead.
  return string.format('%d', n)
end

-- A member is "<cum>:<cost>", or "<cum>:<cost>:<token>" for a call that named itself.
local function decode(member)
  local sep = string.find(member, ':', 1, true)
  local cum = tonumber(string.sub(member, 1, sep - 1))
  local second = string.find(member, ':', sep + 1, true)
  if not second then return cum, tonumber(string.sub(member, sep + 1)), '' end
  return cum, tonumber(string.sub(member, sep + 1, second - 1)), string.sub(member, second + 1)
end

local function encode(cum, cost, token)
  local member = string.format('%016d', cum) .. ':' .. string.format('%d', cost)
  if token ~= '' then member = member .. ':' .. token end
  return member
end

local load = load_handle

local function save(key, state, ttl_us)
  if drop_stale(key, ttl_us) then return end
  if state.floor then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', us(state.floor))
  end
  local remove = state.remove
  if remove then
    for i = 1, #remove, 1000 do
      redis.call('ZREM', key, unpack(remove, i, math.min(i + 999, #remove)))
    end
  end
  if state.rebase then
    local kept = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
    redis.call('DEL', key)
    for i = 1, #kept, 2 do
      local cum, cost, owner = decode(kept[i])
      redis.call('ZADD', key, kept[i + 1], encode(cum - state.rebase, cost, owner))
    end
  end
  local add = state.add
  if add then
    for i = 1, #add do
      redis.call('ZADD', key, us(add[i][1]), add[i][2])
    end
  end
  redis.call('PEXPIRE', key, ttl_ms(ttl_us))
end

local function transition(state, now, plan, cost, token)
  local key = state.key
  local limit, period = plan[1], plan[2]
  local floor = now - period
  local newest_stamp, newest_cum = nil, 0
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #top > 0 then
    newest_cum = decode(top[1])
    newest_stamp = tonumber(top[2])
  end
  local base = newest_cum -- cum before the first live entry
  local first_stamp, first_cum
  if newest_stamp ~= nil and newest_stamp > floor then
    local first = redis.call('ZRANGEBYSCORE', key, '(' .. us(floor), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    local first_cost
    first_cum, first_cost = decode(first[1])
    first_stamp = tonumber(first[2])
    base = first_cum - first_cost
  end
  local used = newest_cum - base
  if used <= limit - cost then
    local stamp = now
    if newest_stamp ~= nil then stamp = math.max(now, newest_stamp) end
    local cum = newest_cum + cost
    local rebase = nil
    if cum > REBASE_AT then
      rebase = base
      cum = cum - base
    end
    local reset = stamp + period - now
    local changes = {key = key, floor = floor, add = {{stamp, encode(cum, cost, token)}}, rebase = rebase}
    return true, limit - used - cost, reset, 0, changes, reset
  end
  -- Refused: the first live entry whose cum covers the excess ages out first. Most
  -- often that is the oldest live entry; otherwise binary search by rank.
  local target = base + used + cost - limit
  local needed_stamp = first_stamp
  if first_cum < target then
    local lo = redis.call('ZCOUNT', key, '-inf', us(floor)) + 1
    local hi = redis.call('ZCARD', key) - 1
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      local cum = decode(redis.call('ZRANGE', key, mid, mid)[1])
      if cum >= target then hi = mid else lo = mid + 1 end
    end
    needed_stamp = tonumber(redis.call('ZRANGE', key, lo, lo, 'WITHSCORES')[2])
  end
  local retry = needed_stamp + period - now
  local reset = newest_stamp + period - now
  return false, math.max(0, limit - used), reset, retry, state, reset
end

-- The newest live stamp once the `skip` newest live entries are gone (nil: none left).
local function newest_live(key, live_from, skip)
  local after = redis.call('ZREVRANGEBYSCORE', key, '+inf', live_from, 'WITHSCORES', 'LIMIT', skip, 1)
  if #after > 0 then return tonumber(after[2]) end
  return nil
end

-- Twin of _take_call in the Python: take `cost` off the entry of `call_token` (the
-- newest such live entry) and lower the cum of every newer entry by as much.
local function refund_call(key, floor, live_from, period, now, cost, call_token)
  local newer = {}
  local found = nil
  local seen = 0
  while not found do
    local batch = redis.call('ZREVRANGEBYSCORE', key, '+inf', live_from, 'WITHSCORES', 'LIMIT', seen, 64)
    if #batch == 0 then break end
    for i = 1, #batch, 2 do
      local cum, spent, owner = decode(batch[i])
      local entry = {tonumber(batch[i + 1]), batch[i], cum, spent, owner}
      if owner == call_token then
        found = entry
        break
      end
      newer[#newer + 1] = entry
    end
    seen = seen + 64
  end
  if not found then
    local newest = newest_live(key, live_from, 0)
    if newest == nil then return {key = key}, 0 end
    return {key = key, floor = floor}, newest + period - now
  end
  local take = math.min(cost, found[4])
  local remove = {found[2]}
  local add = {}
  if take < found[4] then add[1] = {found[1], encode(found[3] - take, found[4] - take, call_token)} end
  for i = 1, #newer do
    local entry = newer[i]
    remove[#remove + 1] = entry[2]
    add[#add + 1] = {entry[1], encode(entry[3] - take, entry[4], entry[5])}
  end
  local newest
  if #newer > 0 then
    newest = newer[1][1]
  elseif #add > 0 then
    newest = found[1]
  else
    newest = newest_live(key, live_from, 1)
  end
  if newest == nil then return {key = key}, 0 end
  return {key = key, floor = floor, remove = remove, add = add}, newest + period - now
end

local function refund(state, now, plan, cost, token)
  local key = state.key
  local period = plan[2]
  local floor = now - period
  local live_from = '(' .. us(floor)
  local _, call_token = admission_of(token)
  if call_token ~= '' then return refund_call(key, floor, live_from, period, now, cost, call_token) end
  local remove = {}
  local add = nil
  local left = cost
  local seen = 0
  while left > 0 do
    local batch = redis.call('ZREVRANGEBYSCORE', key, '+inf', live_from, 'WITHSCORES', 'LIMIT', seen, 64)
    if #batch == 0 then break end
    for i = 1, #batch, 2 do
      local cum, spent, owner = decode(batch[i])
      remove[#remove + 1] = batch[i]
      if spent <= left then
        left = left - spent
      else
        add = {{tonumber(batch[i + 1]), encode(cum - left, spent - left, owner)}}
        left = 0
      end
      if left == 0 then break end
    end
    seen = seen + 64
  end
  local newest = nil
  if add then
    newest = add[1][1]
  else
    newest = newest_live(key, live_from, #remove)
  end
  if newest == nil then return {key = key}, 0 end
  return {key = key, floor = floor, remove = remove, add = add}, newest + period - now
end
