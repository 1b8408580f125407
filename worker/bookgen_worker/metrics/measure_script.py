"""The server-side half of measure(): one Lua script reads every list, the registry and the hashes.

Why a script and not a MULTI pipeline: the registry holds one entry per worker, and shipping 500 of
them to Python to be parsed cost more than the whole budget of a measurement (5 ms). The script
matches each worker's tab-separated load line server-side (one `string.match`; decoding the JSON
entries with cjson cost 4x more), and the reply is a short array of numbers (plus one busy-pod
string per pool). The oldest publish time is found in each list's tail message by a pattern, not
by decoding the message. A script runs atomically,
so the numbers remain one consistent snapshot, as MULTI/EXEC made them; it is sent with EVAL every
time (Redis caches it by its SHA1), so a call is always one command and one round trip.

KEYS: every priority list (queue by queue, `steps` lists each), then the registry hash, kombu's
`unacked` hash, the dead-letter hash and the registry's load lines (workers.load_line).
ARGV: steps, now, max_age, the publish-time header name, then the queue names.

Reply (flat): per list its LLEN; per queue the oldest publish time among its lists' tails ("" when
unknown, as a string: Lua numbers would be truncated to integers); HLEN unacked; HLEN dead letters;
the total held by live workers; 1 if a live worker could not say what it holds (else 0); per queue
running, reserved, scheduled; the number of pools, then per pool: name, busy slots, live workers,
slots, and the pods with a busy slot joined by newlines.
"""

from __future__ import annotations

MEASURE_LUA = r"""
local find, match, gmatch, tonumber, call = string.find, string.match, string.gmatch, tonumber, redis.call
local steps = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local max_age = tonumber(ARGV[3])
local pattern = '"' .. ARGV[4] .. '"%s*:%s*"?([%d%.eE+-]+)'
local plain = '"' .. ARGV[4] .. '": '
local nqueues = #ARGV - 4
local nlists = nqueues * steps
local out = {}
local oldest = {}
for i = 1, nlists do
  local n = call('LLEN', KEYS[i])
  out[#out + 1] = n
  if n > 0 then
    -- A plain find locates the header without decoding the whole message (the body is base64: no false
    -- hit); the pattern is the fallback for other JSON spacing.
    local msg = call('LINDEX', KEYS[i], -1) or ''
    local at = find(msg, plain, 1, true)
    local sent = tonumber(at and match(msg, '^"?([%d%.eE+-]+)', at + #plain) or match(msg, pattern))
    local q = math.floor((i - 1) / steps) + 1
    if sent and (oldest[q] == nil or sent < oldest[q]) then oldest[q] = sent end
  end
end
for q = 1, nqueues do
  out[#out + 1] = oldest[q] and string.format('%.6f', oldest[q]) or ''
end
out[#out + 1] = call('HLEN', KEYS[nlists + 2])
out[#out + 1] = call('HLEN', KEYS[nlists + 3])
local index = {}
for q = 1, nqueues do index[ARGV[4 + q]] = q end
local held = {}
for q = 1, nqueues * 3 do held[q] = 0 end
local pools, order = {}, {}
local total = 0
-- Workers that publish JSON entries but no load line (older versions): count kombu's hash instead.
local legacy = call('HLEN', KEYS[nlists + 1]) > call('HLEN', KEYS[nlists + 4]) and 1 or 0
for _, line in ipairs(call('HVALS', KEYS[nlists + 4])) do
  local at, name, pod, busy, slots, rest = match(line, '^([^\t]*)\t([^\t]*)\t([^\t]*)\t(%d+)\t(%d+)(.*)$')
  at = tonumber(at)
  if at and now - at <= max_age then
    for queue, r, s, e in gmatch(rest, '\t([^\t]*)\t(%d+)\t(%d+)\t(%d+)') do
      r, s, e = tonumber(r), tonumber(s), tonumber(e)
      total = total + r + s + e
      local q = index[queue]
      if q then
        held[3 * q - 2] = held[3 * q - 2] + r
        held[3 * q - 1] = held[3 * q - 1] + s
        held[3 * q] = held[3 * q] + e
      end
    end
    local p = pools[name]
    if p == nil then
      p = {0, 0, 0, {}}
      pools[name] = p
      order[#order + 1] = name
    end
    busy = tonumber(busy)
    p[1] = p[1] + busy
    p[2] = p[2] + 1
    p[3] = p[3] + tonumber(slots)
    if busy > 0 then p[4][#p[4] + 1] = pod end
  end
end
out[#out + 1] = total
out[#out + 1] = legacy
for q = 1, nqueues * 3 do out[#out + 1] = held[q] end
out[#out + 1] = #order
for _, name in ipairs(order) do
  local p = pools[name]
  out[#out + 1] = name
  out[#out + 1] = p[1]
  out[#out + 1] = p[2]
  out[#out + 1] = p[3]
  out[#out + 1] = table.concat(p[4], '\n')
end
return out
"""
