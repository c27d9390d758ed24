-- Fixed window. Twin of limify/core/algorithms/fixed_window.py: this file gives
-- the epoch-aligned `window`; window_counter.lua (concatenated after it) counts.

-- The window holding `at`, aligned to multiples of the period. Lua's % is
-- a - floor(a / b) * b, exact for integers below 2^53.
local function window(at, plan)
  local period = plan[2]
  local start = at - at % period
  return start, start + period
end
