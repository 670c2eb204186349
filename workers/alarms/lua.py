"""The alert store's Lua scripts (see ``workers.alarms.state``).

Every key a script touches is passed in ``KEYS``, and every call's keys lie in one hash slot
(Redis Cluster refuses anything else). The batch scripts (``APPLY``, ``CLAIM``, ``MARK``,
``RELEASE``) take the keys of any number of alerts: each alert's keys share the hash tag
``{fingerprint}``, so on Redis Cluster a caller groups its items by hash slot and makes one
call per slot. ``CLOSE_QUIET`` touches one alert, ``FORGET`` the index of open alerts (a key
of its own slot): what the index needs after them is done by ``workers.alarms.state``.

``APPLY`` returns an alert to Python as a JSON object: the fields of its ``meta`` (spliced in
as Python encoded them, never decoded here: Lua's JSON would round big integers), then ``id``,
``status``, the integer fields as numbers and ``closed_by`` (or null), the order in which
``workers.alarms.state`` lists an alert read from its hash.
"""

from __future__ import annotations

# KEYS: the alerts (hashes) of the call's n events, each once; then per event its record
# marker and its event marker. ARGV: ttl, the number of alerts, and the events as a JSON array
# of ``[alert (its position in KEYS), time, severity, status, new alert id, meta json]``, all
# but the first as strings (the meta is never decoded here: Lua's JSON would round big
# integers; it is spliced into the alerts returned). Applies the events in order and returns
# a JSON array, per event ``[outcome]``, ``[outcome, [change, alert]]`` or, when the
# event opened an alert over a quiet close whose publication failed, ``[outcome, [change,
# alert], ["closed", that close]]``.
#
# The record marker keeps the change the record made (``[change, alert]``), so a build retried
# after a failure emits it again ("replayed") instead of losing it; publish skips what it sent.
# The event marker makes an event id count once. An alert read once per call is kept in a table
# (every write goes through it, with one HSET per event); the text of its meta is cut once.
APPLY = """
local ttl = ARGV[1]
local FIELDS = {'id', 'status', 'count', 'severity', 'first_time', 'last_time', 'last_change',
                'meta', 'version', 'closed_by', 'close_published'}
local alerts = {}

-- The alert as a JSON object: a.head ('{' and the fields of its meta), then its own fields
-- (its id is hex, its status and closed_by are the words written here: nothing to escape).
local function alert_json(a)
  local closed_by = 'null'
  if a.closed_by then closed_by = '"' .. a.closed_by .. '"' end
  return a.head .. '"id":"' .. a.id .. '","status":"' .. a.status .. '","count":' .. a.count
    .. ',"severity":' .. a.severity .. ',"first_time":' .. a.first_time .. ',"last_time":'
    .. a.last_time .. ',"last_change":' .. a.last_change .. ',"version":' .. a.version
    .. ',"closed_by":' .. closed_by .. '}'
end

local function with_head(a)
  local inner = string.sub(a.meta or '{}', 2, -2)
  if inner ~= '' then a.head = '{' .. inner .. ',' else a.head = '{' end
  return a
end

local function load(key)
  local a = alerts[key]
  if a then return a end
  local values = redis.call('HMGET', key, unpack(FIELDS))
  a = {}
  for i = 1, #FIELDS do
    if values[i] then a[FIELDS[i]] = values[i] end
  end
  if a.status then with_head(a) end
  alerts[key] = a
  return a
end

-- One event on its alert: its outcome, the change it made ('' for none) as [change, alert],
-- and a quiet close it replaced whose publication failed ('' for none).
local function step(key, ts, sevs, ev, new_id, meta)
  local a = load(key)
  local t = tonumber(ts)
  local status = a.status
  local version = tonumber(a.version or '0')
  local change
  local close = ''
  if not status or status == 'CLOSED' then
    if status and t <= tonumber(a.last_change) then return 'stale', '', '' end
    if ev ~= 'ABNORMAL' then return 'ignored', '', '' end
    if a.closed_by == 'quiet' and a.close_published ~= '1' then  -- its send failed: keep it
      close = '["closed",' .. alert_json(a) .. ']'
    end
    a = with_head({id = new_id, status = 'ABNORMAL', count = '1', severity = sevs,
                   first_time = ts, last_time = ts, last_change = ts, meta = meta,
                   version = string.format('%d', version + 1)})
    alerts[key] = a
    redis.call('DEL', key)
    redis.call('HSET', key, 'id', new_id, 'status', 'ABNORMAL', 'count', '1', 'severity', sevs,
               'first_time', ts, 'last_time', ts, 'last_change', ts, 'meta', meta,
               'version', a.version)
    change = 'opened'
  else
    if t < tonumber(a.last_change) then return 'stale', '', '' end
    if ev == 'RECOVERED' and status == 'RECOVERED' then return 'ignored', '', '' end
    local set = {}
    if ev ~= 'CLOSED' and t > tonumber(a.last_time) then
      a.last_time = ts
      set[#set + 1] = 'last_time'
      set[#set + 1] = ts
    end
    if ev == 'ABNORMAL' then
      a.count = string.format('%d', tonumber(a.count) + 1)
      set[#set + 1] = 'count'
      set[#set + 1] = a.count
      if tonumber(sevs) < tonumber(a.severity) then
        a.severity = sevs
        set[#set + 1] = 'severity'
        set[#set + 1] = sevs
      end
      if status == 'RECOVERED' then
        a.status, a.last_change = 'ABNORMAL', ts
        set[#set + 1] = 'status'
        set[#set + 1] = 'ABNORMAL'
        set[#set + 1] = 'last_change'
        set[#set + 1] = ts
      end
      change = 'updated'
    elseif ev == 'RECOVERED' then
      a.status, a.last_change = 'RECOVERED', ts
      set[#set + 1] = 'status'
      set[#set + 1] = 'RECOVERED'
      set[#set + 1] = 'last_change'
      set[#set + 1] = ts
      change = 'recovered'
    else
      a.status, a.last_change, a.closed_by = 'CLOSED', ts, 'event'
      set[#set + 1] = 'status'
      set[#set + 1] = 'CLOSED'
      set[#set + 1] = 'last_change'
      set[#set + 1] = ts
      set[#set + 1] = 'closed_by'
      set[#set + 1] = 'event'
      change = 'closed'
    end
    a.version = string.format('%d', version + 1)
    set[#set + 1] = 'version'
    set[#set + 1] = a.version
    redis.call('HSET', key, unpack(set))
  end
  return change, '["' .. change .. '",' .. alert_json(a) .. ']', close
end

-- The reply is built from pieces: each event adds '[outcome' and, if it made a change,
-- ',' and the change (and ',' and a close), then ']'.
local alert_keys = tonumber(ARGV[2])
local events = cjson.decode(ARGV[3])
local out = {'['}
for i = 1, #events do
  local e = events[i]
  local record, ident = KEYS[alert_keys + 2 * i - 1], KEYS[alert_keys + 2 * i]
  if i > 1 then out[#out + 1] = ',' end
  local prior = redis.call('GET', record)
  if prior then
    if prior ~= '' then
      out[#out + 1] = '["replayed",'
      out[#out + 1] = prior
      out[#out + 1] = ']'
    else
      out[#out + 1] = '["duplicate"]'
    end
  else
    local outcome, made, close = 'duplicate', '', ''
    if redis.call('SET', ident, '1', 'NX', 'EX', ttl) then
      outcome, made, close = step(KEYS[e[1]], e[2], e[3], e[4], e[5], e[6])
    end
    redis.call('SET', record, made, 'EX', ttl)
    if made == '' then
      out[#out + 1] = '["' .. outcome .. '"]'
    else
      out[#out + 1] = '["' .. outcome .. '",'
      out[#out + 1] = made
      if close ~= '' then
        out[#out + 1] = ','
        out[#out + 1] = close
      end
      out[#out + 1] = ']'
    end
  end
end
out[#out + 1] = ']'
return table.concat(out)
"""

# KEYS: alert. ARGV: cutoff ms. Closes a quiet alert as of its last event (so a later event
# opens a new alert and an older one is stale). An alert closed by an earlier sweep whose close
# is not yet published is returned again. 'gone' when there is no alert or it is closed and
# published: the caller drops it from the index of open alerts (another slot's key).
CLOSE_QUIET = """
local a = redis.call('HMGET', KEYS[1], 'status', 'last_time', 'version', 'closed_by',
                     'close_published')
if a[1] == 'CLOSED' and a[4] == 'quiet' and a[5] ~= '1' then
  return cjson.encode({'closed', redis.call('HGETALL', KEYS[1])})
end
if not a[1] or a[1] == 'CLOSED' then return 'gone' end
if tonumber(a[2]) >= tonumber(ARGV[1]) then return false end
redis.call('HSET', KEYS[1], 'status', 'CLOSED', 'last_change', a[2], 'closed_by', 'quiet',
           'version', tostring(tonumber(a[3]) + 1))
return cjson.encode({'closed', redis.call('HGETALL', KEYS[1])})
"""

# KEYS: publication markers of changes. ARGV: ttl. Claims the changes for sending; returns one
# letter per key: 'n' (new: claimed now), 'p' (published: sent and confirmed before, skip it) or
# 'c' (claimed by an earlier run whose outcome is unknown: it may be on the topic already, send
# it again and count it). A key given twice is 'n' first, then 'c'.
CLAIM = """
local out = {}
for i = 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v == '1' then
    out[i] = 'p'
  elseif v then
    out[i] = 'c'
  else
    redis.call('SET', KEYS[i], 's', 'EX', ARGV[1])
    out[i] = 'n'
  end
end
return table.concat(out)
"""

# KEYS: publication markers of n changes, then the alerts of quiet closes among them. ARGV: ttl,
# n, then per quiet close its alert id and version. Marks the changes as sent, and each quiet
# close as published on its alert (if the hash still holds that alert at that version).
MARK = """
local n = tonumber(ARGV[2])
for i = 1, n do redis.call('SET', KEYS[i], '1', 'EX', ARGV[1]) end
for i = n + 1, #KEYS do
  local j = 2 * (i - n) + 1
  local a = redis.call('HMGET', KEYS[i], 'id', 'version')
  if a[1] == ARGV[j] and a[2] == ARGV[j + 1] then
    redis.call('HSET', KEYS[i], 'close_published', '1')
  end
end
return 0
"""

# KEYS: publication markers. Gives back the claims of changes known not to be sent.
RELEASE = """
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == 's' then redis.call('DEL', KEYS[i]) end
end
return 0
"""

# KEYS: index. ARGV: cutoff ms, fingerprints. Drops published quiet closes from the index
# (unless a newer event moved a fingerprint past the cutoff meanwhile); returns those dropped.
FORGET = """
local out = {}
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) < tonumber(ARGV[1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    out[#out + 1] = ARGV[i]
  end
end
return out
"""
