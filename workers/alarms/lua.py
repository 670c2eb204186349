"""The alert store's Lua scripts (see ``workers.alarms.state``): each touches the keys of one
alert (``{fingerprint}``), or the index of open alerts, atomically."""

from __future__ import annotations

# KEYS: alert (hash), record marker, event marker. ARGV: ttl, time, severity, status, new alert
# id, meta json (never decoded here: Lua's JSON would round big integers). Returns {outcome,
# change json}. The record marker keeps the change the record made, so a build retried after
# a failure emits it again ("replayed") instead of losing it; publish skips what it sent.
APPLY = """
local ttl = tonumber(ARGV[1])
local prior = redis.call('GET', KEYS[2])
if prior then
  if prior ~= '' then return {'replayed', prior} end
  return {'duplicate'}
end
redis.call('SET', KEYS[2], '', 'EX', ttl)
if not redis.call('SET', KEYS[3], '1', 'NX', 'EX', ttl) then return {'duplicate'} end
local t, sev, ev = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local a = redis.call('HMGET', KEYS[1], 'status', 'severity', 'last_time', 'last_change',
                     'version', 'closed_by', 'close_published')
local status, version = a[1], tonumber(a[5] or '0')
local change
local unpublished = false
if not status or status == 'CLOSED' then
  if status and t <= tonumber(a[4]) then return {'stale'} end
  if ev ~= 'ABNORMAL' then return {'ignored'} end
  if a[6] == 'quiet' and a[7] ~= '1' then  -- a sweep closed it but its send failed: keep it
    unpublished = cjson.encode({'closed', redis.call('HGETALL', KEYS[1])})
  end
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'id', ARGV[5], 'status', 'ABNORMAL', 'count', '1',
             'severity', ARGV[3], 'first_time', ARGV[2], 'last_time', ARGV[2],
             'last_change', ARGV[2], 'meta', ARGV[6])
  change = 'opened'
else
  if t < tonumber(a[4]) then return {'stale'} end
  if ev == 'RECOVERED' and status == 'RECOVERED' then return {'ignored'} end
  if ev ~= 'CLOSED' and t > tonumber(a[3]) then
    redis.call('HSET', KEYS[1], 'last_time', ARGV[2])
  end
  if ev == 'ABNORMAL' then
    redis.call('HINCRBY', KEYS[1], 'count', 1)
    if sev < tonumber(a[2]) then redis.call('HSET', KEYS[1], 'severity', ARGV[3]) end
    if status == 'RECOVERED' then
      redis.call('HSET', KEYS[1], 'status', 'ABNORMAL', 'last_change', ARGV[2])
    end
    change = 'updated'
  elseif ev == 'RECOVERED' then
    redis.call('HSET', KEYS[1], 'status', 'RECOVERED', 'last_change', ARGV[2])
    change = 'recovered'
  else
    redis.call('HSET', KEYS[1], 'status', 'CLOSED', 'last_change', ARGV[2], 'closed_by', 'event')
    change = 'closed'
  end
end
redis.call('HSET', KEYS[1], 'version', tostring(version + 1))
local out = cjson.encode({change, redis.call('HGETALL', KEYS[1])})
redis.call('SET', KEYS[2], out, 'EX', ttl)
if unpublished then return {change, out, unpublished} end
return {change, out}
"""

# KEYS: alert, index. ARGV: fingerprint, cutoff ms. Closes a quiet alert as of its last event
# (so a later event opens a new alert and an older one is stale). An alert closed by an earlier
# sweep stays in the index, and is returned again, until that sweep published its close.
CLOSE_QUIET = """
local a = redis.call('HMGET', KEYS[1], 'status', 'last_time', 'version', 'closed_by',
                     'close_published')
if a[1] == 'CLOSED' and a[4] == 'quiet' and a[5] ~= '1' then
  return cjson.encode({'closed', redis.call('HGETALL', KEYS[1])})
end
if not a[1] or a[1] == 'CLOSED' then redis.call('ZREM', KEYS[2], ARGV[1]) return false end
if tonumber(a[2]) >= tonumber(ARGV[2]) then return false end
redis.call('HSET', KEYS[1], 'status', 'CLOSED', 'last_change', a[2], 'closed_by', 'quiet',
           'version', tostring(tonumber(a[3]) + 1))
return cjson.encode({'closed', redis.call('HGETALL', KEYS[1])})
"""

# KEYS: alert. ARGV: alert id, version. Notes that this quiet close was published (if the hash
# still holds that alert at that version).
MARK_CLOSE = """
local a = redis.call('HMGET', KEYS[1], 'id', 'version')
if a[1] == ARGV[1] and a[2] == ARGV[2] then redis.call('HSET', KEYS[1], 'close_published', '1') end
return 0
"""

# KEYS: a change's publication marker. ARGV: ttl. Claims the change for sending: 'new' (claimed
# now), 'published' (sent and confirmed before: skip it) or 'claimed' (an earlier run claimed it
# and its outcome is unknown: it may be on the topic already, send it again and count it).
CLAIM = """
local v = redis.call('GET', KEYS[1])
if v == '1' then return 'published' end
if v then return 'claimed' end
redis.call('SET', KEYS[1], 's', 'EX', tonumber(ARGV[1]))
return 'new'
"""

# KEYS: a change's publication marker. Gives back a claim for a change known not to be sent.
RELEASE = """
if redis.call('GET', KEYS[1]) == 's' then redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: index. ARGV: cutoff ms, fingerprints. Drops published quiet closes from the index
# (unless a newer event moved a fingerprint past the cutoff meanwhile).
FORGET = """
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) < tonumber(ARGV[1]) then redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return 0
"""
