"""The in-flight ledger's Lua scripts (see ``workers.state.ledger``): one per operation, each
run atomically on the keys of one pipeline's hash tag, on Redis's clock.

An entry of a partition's ledger hash is ``b:<batch>`` → ``start end handoffs starts due_ms``;
``reach`` is the offset past everything recorded. Fields that do not parse are ignored.
"""

from __future__ import annotations

# Shared by the scripts: the time on Redis's clock in ms; the fence check of a writer; and
# settling a partition's committed offset at the oldest slice in flight, or at reach.
_LIB = """
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function fence(lease_key, token, epoch, gens_key, p, gen)
  local lease = redis.call('HMGET', lease_key, 'token', 'epoch')
  if lease[1] ~= token then return 'not_owner' end
  if lease[2] ~= epoch then return 'fenced' end
  if (redis.call('HGET', gens_key, p) or '0') ~= gen then return 'reset' end
  return false
end
local function settle(offsets_key, ledger_key, p, ttl)
  local fields = redis.call('HGETALL', ledger_key)
  local low
  local n = 0
  for j = 1, #fields, 2 do
    local v
    if fields[j] == 'reach' then
      v = tonumber(fields[j + 1])
    elseif string.sub(fields[j], 1, 2) == 'b:' then
      v = tonumber(string.match(fields[j + 1], '^(%d+) %d+ %d+ %d+ %d+$'))
      if v then n = n + 1 end  -- a malformed entry holds nothing back (its owner drops it)
    end
    if v and (not low or v < low) then low = v end
  end
  local cur = redis.call('HGET', offsets_key, p)
  if low and (not cur or low > tonumber(cur)) then
    redis.call('HSET', offsets_key, p, string.format('%.0f', low))
    if ttl > 0 then
      redis.call('EXPIRE', offsets_key, ttl)
      redis.call('EXPIRE', ledger_key, ttl)
    end
    return {low, n}
  end
  if cur then return {tonumber(cur), n} end
  return {false, n}
end
local function entry(start, stop, handoffs, starts, due)
  local due_text = string.format('%.0f', due)
  return start .. ' ' .. stop .. ' ' .. handoffs .. ' ' .. starts .. ' ' .. due_text
end
"""

# KEYS: offsets, generations, then (lease, ledger) per slice. ARGV: token, ttl, due_in, then
# (partition, epoch, generation, batch, start, end) per slice.
RECORD = (
    _LIB
    + """
local token, ttl, due = ARGV[1], tonumber(ARGV[2]), clock() + tonumber(ARGV[3])
local out = {}
for i = 1, (#KEYS - 2) / 2 do
  local lease_key, ledger_key = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  local a = 4 + (i - 1) * 6
  local p, batch = ARGV[a], ARGV[a + 3]
  local status = fence(lease_key, token, ARGV[a + 1], KEYS[2], p, ARGV[a + 2])
  local committed = redis.call('HGET', KEYS[1], p)
  local n = -1
  if not status then
    local reach = tonumber(redis.call('HGET', ledger_key, 'reach')) or -1
    if not committed then
      status = 'missing'
    elseif not tonumber(committed) then
      status = 'invalid'
    else
      if tonumber(committed) > reach then reach = tonumber(committed) end
      if tonumber(ARGV[a + 4]) ~= reach then
        status = 'gap'
      else
        redis.call('HSET', ledger_key, 'reach', ARGV[a + 5])
        if batch ~= '' then
          redis.call('HSET', ledger_key, 'b:' .. batch, entry(ARGV[a + 4], ARGV[a + 5], 1, 0, due))
        end
        status = 'written'
        committed, n = unpack(settle(KEYS[1], ledger_key, p, ttl))
      end
    end
  end
  table.insert(out, {p, status, committed or false, n})
end
return out
"""
)

# KEYS: offsets, then one ledger key per slice. ARGV: ttl, then (partition, batch) per slice.
FINISH = (
    _LIB
    + """
local ttl = tonumber(ARGV[1])
local out = {}
for i = 2, #KEYS do
  local p, batch = ARGV[2 * i - 2], ARGV[2 * i - 1]
  local status = 'unknown'
  if redis.call('HDEL', KEYS[i], 'b:' .. batch) == 1 then status = 'finished' end
  local committed, n = unpack(settle(KEYS[1], KEYS[i], p, ttl))
  table.insert(out, {p, status, committed, n})
end
return out
"""
)

# KEYS: one ledger key per slice. ARGV: budget, max starts, then batch per slice.
BEGIN = (
    _LIB
    + """
local now = clock()
local budget, most = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS do
  local field = 'b:' .. ARGV[i + 2]
  local raw = redis.call('HGET', KEYS[i], field)
  local s, e, h, st, due
  if raw then s, e, h, st, due = string.match(raw, '^(%d+) (%d+) (%d+) (%d+) (%d+)$') end
  if s then
    st = tonumber(st) + 1
    local d = math.max(tonumber(due), now + budget)
    if st > most then d = now end
    redis.call('HSET', KEYS[i], field, entry(s, e, h, st, d))
    table.insert(out, st)
  else
    table.insert(out, -1)
  end
end
return out
"""
)

# KEYS: offsets, generations, lease, ledger. ARGV: token, epoch, generation, partition, old
# batch, due_in, then (batch, start, end) per part.
REDRIVE = (
    _LIB
    + """
local old = ARGV[5]
local status = fence(KEYS[3], ARGV[1], ARGV[2], KEYS[2], ARGV[4], ARGV[3])
if status then return status end
local raw = redis.call('HGET', KEYS[4], 'b:' .. old)
if not raw then return 'finished' end
local h, st = string.match(raw, '^%d+ %d+ (%d+) (%d+) %d+$')
if not h then return 'finished' end  -- malformed: nothing to re-drive
local due = clock() + tonumber(ARGV[6])
redis.call('HDEL', KEYS[4], 'b:' .. old)
for a = 7, #ARGV, 3 do
  local handoffs, starts = 1, 0
  if ARGV[a] == old then handoffs, starts = tonumber(h) + 1, st end
  local value = entry(ARGV[a + 1], ARGV[a + 2], handoffs, starts, due)
  redis.call('HSET', KEYS[4], 'b:' .. ARGV[a], value)
end
return 'redriven'
"""
)

# KEYS: one ledger key per slice. ARGV: starts to take back (0 or 1), then batch per slice.
EXPEDITE = (
    _LIB
    + """
local now = clock()
local unstart = tonumber(ARGV[1])
for i = 1, #KEYS do
  local field = 'b:' .. ARGV[i + 1]
  local raw = redis.call('HGET', KEYS[i], field)
  local s, e, h, st
  if raw then s, e, h, st = string.match(raw, '^(%d+) (%d+) (%d+) (%d+) %d+$') end
  if s then
    st = math.max(0, tonumber(st) - unstart)
    redis.call('HSET', KEYS[i], field, entry(s, e, h, st, now))
  end
end
return 0
"""
)
