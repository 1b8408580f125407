"""The server-side half of measure(): one Lua script reads every list, the registry and the hashes.

Why a script and not a MULTI pipeline: the registry holds one entry per worker, and shipping 500 of
them to Python to be parsed cost more than the whole budget of a measurement (5 ms). The registry
keeps what measure() needs already summed (registry_scripts.py: every publish updates the sums in
the same script that writes the line), so the script reads those sums and subtracts only the lines
that went stale since (a range query on the sorted set of publish times): O(queues + pools + busy
pods + stale lines), not O(workers). When the sums cannot be trusted (the sorted set and the lines
disagree, e.g. lines written by an older version), it parses every worker's tab-separated load line
(workers.load_line) as before. The oldest publish time is found in each list's tail message by a
plain search, not by decoding the message. A script runs atomically, so the numbers remain one
consistent snapshot, as MULTI/EXEC made them; it is sent with EVAL every time (Redis caches it by
its SHA1), so a call is always one command and one round trip.

KEYS: every priority list (queue by queue, `steps` lists each), then the registry hash, kombu's
`unacked` hash, the dead-letter hash, the registry's load lines, the sorted set of their times and
the sums. ARGV: steps, now, max_age, the publish-time header name, the stale cutoff (now - max_age,
formatted by the caller: Lua would print it with 14 digits), the prefix of the busy-pod hashes,
1 to use the sums (0: parse every line, for comparisons), then the queue names.

Reply: first one string of space-separated fields: per queue its pending count (summed over its
lists) and the oldest publish time among its lists' tails ("-" when unknown; a string, as Lua
numbers print with 14 digits); HLEN unacked; HLEN dead letters; the total held by live workers; 1
if a live worker could not say what it holds (else 0); 1 if the sums were used (0: every line was
parsed); per queue running, reserved, scheduled. Then one string per pool with live workers: name,
busy slots, live workers, slots and the pods with a busy slot joined by newlines, tab-separated.
One string instead of ~120 array items: parsing the RESP array was most of the client's time.
"""

from __future__ import annotations

MEASURE_LUA = r"""
local find, match, tonumber, call, format = string.find, string.match, tonumber, redis.call, string.format
local steps = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local max_age = tonumber(ARGV[3])
local plain = '"' .. ARGV[4] .. '": '
local pattern = '"' .. ARGV[4] .. '"%s*:%s*"?([%d%.eE+-]+)'
local cutoff, busy_prefix = ARGV[5], ARGV[6]
local nqueues = #ARGV - 7
local nlists = nqueues * steps
local WORKERS, UNACKED, DEAD, LOAD, SEEN, SUMS = nlists + 1, nlists + 2, nlists + 3, nlists + 4, nlists + 5, nlists + 6
local HEAD = '^([^\t]*)\t([^\t]*)\t([^\t]*)\t(%d+)\t(%d+)()'
local QUEUE = '^\t([^\t]*)\t(%d+)\t(%d+)\t(%d+)()'
local nums, k = {}, 0
for q = 1, nqueues do
  local pending, oldest = 0, nil
  for i = (q - 1) * steps + 1, q * steps do
    local n = call('LLEN', KEYS[i])
    if n > 0 then
      pending = pending + n
      -- A plain find locates the header without decoding the whole message (the body is base64: no false
      -- hit); the pattern is the fallback for other JSON spacing.
      local msg = call('LINDEX', KEYS[i], -1) or ''
      local at = find(msg, plain, 1, true)
      local sent = tonumber(at and match(msg, '^"?([%d%.eE+-]+)', at + #plain) or match(msg, pattern))
      if sent and (oldest == nil or sent < oldest) then oldest = sent end
    end
  end
  nums[k + 1] = pending
  nums[k + 2] = oldest and format('%.6f', oldest) or '-'
  k = k + 2
end
nums[k + 1] = call('HLEN', KEYS[UNACKED])
nums[k + 2] = call('HLEN', KEYS[DEAD])
k = k + 2
local nlines = call('HLEN', KEYS[LOAD])
-- Workers that publish JSON entries but no load line (older versions): count kombu's hash instead.
local legacy = call('HLEN', KEYS[WORKERS]) > nlines and 1 or 0
local index, held = {}, {}
for q = 1, nqueues do
  index[ARGV[7 + q]] = 3 * q - 2
  held[3 * q - 2], held[3 * q - 1], held[3 * q] = 0, 0, 0
end
local pools, order = {}, {}
local total = 0
local function pool(name)
  local p = pools[name]
  if p == nil then
    p = {0, 0, 0, {}, 0}
    pools[name] = p
    order[#order + 1] = name
  end
  return p
end
local summed = ARGV[7] == '1' and nlines == call('ZCARD', KEYS[SEEN])
  and (nlines == 0 or call('EXISTS', KEYS[SUMS]) == 1)
if summed then
  local sums = {}
  local raw = call('HGETALL', KEYS[SUMS])
  for i = 1, #raw, 2 do sums[raw[i]] = tonumber(raw[i + 1]) end
  -- Lines that went stale since they were summed: subtract them, and drop their pods from the busy lists.
  local gone = {}
  for _, host in ipairs(call('ZRANGEBYSCORE', KEYS[SEEN], '-inf', '(' .. cutoff)) do
    local line = call('HGET', KEYS[LOAD], host)
    local at, name, pod, busy, slots, pos = match(line or '', HEAD)
    if at and tonumber(at) then
      busy = tonumber(busy)
      sums['w\t' .. name] = (sums['w\t' .. name] or 0) - 1
      sums['b\t' .. name] = (sums['b\t' .. name] or 0) - busy
      sums['c\t' .. name] = (sums['c\t' .. name] or 0) - tonumber(slots)
      while true do
        local queue, r, s, e, after = match(line, QUEUE, pos)
        if not queue then break end
        pos = after
        r, s, e = tonumber(r), tonumber(s), tonumber(e)
        sums['r\t' .. queue] = (sums['r\t' .. queue] or 0) - r
        sums['s\t' .. queue] = (sums['s\t' .. queue] or 0) - s
        sums['e\t' .. queue] = (sums['e\t' .. queue] or 0) - e
        sums['total'] = (sums['total'] or 0) - r - s - e
      end
      if busy > 0 then gone[host] = true end
    end
  end
  total = sums['total'] or 0
  for q = 1, nqueues do
    local queue = ARGV[7 + q]
    held[3 * q - 2] = sums['r\t' .. queue] or 0
    held[3 * q - 1] = sums['s\t' .. queue] or 0
    held[3 * q] = sums['e\t' .. queue] or 0
  end
  for i = 1, #raw, 2 do
    local name = match(raw[i], '^w\t(.*)$')
    if name and sums[raw[i]] > 0 then
      local p = pool(name)
      p[1], p[2], p[3] = sums['b\t' .. name] or 0, sums[raw[i]], sums['c\t' .. name] or 0
      if next(gone) == nil then  -- the usual case: every busy worker of the sums is live
        p[4] = call('HVALS', busy_prefix .. name)
      else
        local busy = call('HGETALL', busy_prefix .. name)
        for j = 1, #busy, 2 do
          if not gone[busy[j]] then
            p[5] = p[5] + 1
            p[4][p[5]] = busy[j + 1]
          end
        end
      end
    end
  end
else
  for _, line in ipairs(call('HVALS', KEYS[LOAD])) do
    local at, name, pod, busy, slots, pos = match(line, HEAD)
    at = tonumber(at)
    if at and now - at <= max_age then
      while true do
        local queue, r, s, e, after = match(line, QUEUE, pos)
        if not queue then break end
        pos = after
        r, s, e = tonumber(r), tonumber(s), tonumber(e)
        total = total + r + s + e
        local h = index[queue]
        if h then
          held[h] = held[h] + r
          held[h + 1] = held[h + 1] + s
          held[h + 2] = held[h + 2] + e
        end
      end
      local p = pool(name)
      busy = tonumber(busy)
      p[1] = p[1] + busy
      p[2] = p[2] + 1
      p[3] = p[3] + tonumber(slots)
      if busy > 0 then
        p[5] = p[5] + 1
        p[4][p[5]] = pod
      end
    end
  end
end
nums[k + 1] = total
nums[k + 2] = legacy
nums[k + 3] = summed and 1 or 0
k = k + 3
for q = 1, nqueues * 3 do nums[k + q] = held[q] end
local out = {table.concat(nums, ' ')}
for i, name in ipairs(order) do
  local p = pools[name]
  out[i + 1] = name .. '\t' .. p[1] .. '\t' .. p[2] .. '\t' .. p[3] .. '\t' .. table.concat(p[4], '\n')
end
return out
"""
