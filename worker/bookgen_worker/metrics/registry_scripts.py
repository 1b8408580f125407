"""Server-side halves of the worker registry: every change to a load line also updates running sums.

Why: measure() used to parse every worker's load line on every call (500 workers: ~1 ms of Redis
CPU in a ~1.5 ms script, and that script runs for every poll of every autoscaler and every
scrape). A worker's load changes far less often than it is read, so the registry keeps, next to
the lines, what measure() needs already summed, and keeps it exact by changing both in one script:

- `WORKER_SUMS` (hash of integers): per queue `r\\t<queue>`, `s\\t<queue>`, `e\\t<queue>` (running,
  reserved, ETA-held), per pool `w\\t<pool>`, `b\\t<pool>`, `c\\t<pool>` (workers, busy slots,
  slots), and `total`: the sums over every load line present, live or not yet swept;
- `WORKER_SEEN` (sorted set): hostname -> updated_at of its line, so measure() finds the lines
  that went stale by a range query and subtracts just those (a dead worker cannot remove itself);
- `WORKER_BUSY` + pool (hash): hostname -> pod of the pool's workers with a busy slot.

publish subtracts the worker's previous line and adds the new one (nothing when only the time
moved: the usual case); remove subtracts and deletes (unregister, sweep); rebuild recomputes
everything from the lines (the sweep runs it at most once a minute across all workers), so sums
that were damaged from outside heal. measure() also checks that the sorted set and the lines
agree, and parses the lines itself when they do not.
"""

from __future__ import annotations

#: `apply(sums, busy_prefix, host, line, sign)`: add (sign 1) or remove (-1) one load line's share.
APPLY_LUA = r"""
local match, tonumber, call = string.match, tonumber, redis.call
local HEAD = '^([^\t]*)\t([^\t]*)\t([^\t]*)\t(%d+)\t(%d+)()'
local QUEUE = '^\t([^\t]*)\t(%d+)\t(%d+)\t(%d+)()'
-- A line counts only if it parses and its time is a number (measure() could not tell when it went stale).
local function valid(line)
  local at = match(line, HEAD)
  return at ~= nil and tonumber(at) ~= nil
end
-- Redis refuses "-0" (what Lua prints for -1 * 0) as an integer; and a zero changes nothing.
local function incr(sums, field, n)
  if n ~= 0 then call('HINCRBY', sums, field, n) end
end
local function apply(sums, busy_prefix, host, line, sign)
  local at, pool, pod, busy, slots, pos = match(line, HEAD)
  if not at or not tonumber(at) then return end
  busy = tonumber(busy)
  call('HINCRBY', sums, 'w\t' .. pool, sign)
  incr(sums, 'b\t' .. pool, sign * busy)
  incr(sums, 'c\t' .. pool, sign * tonumber(slots))
  local total = 0
  while true do
    local queue, r, s, e, after = match(line, QUEUE, pos)
    if not queue then break end
    pos = after
    r, s, e = tonumber(r), tonumber(s), tonumber(e)
    incr(sums, 'r\t' .. queue, sign * r)
    incr(sums, 's\t' .. queue, sign * s)
    incr(sums, 'e\t' .. queue, sign * e)
    total = total + r + s + e
  end
  incr(sums, 'total', sign * total)
  if busy > 0 then
    if sign > 0 then call('HSET', busy_prefix .. pool, host, pod) else call('HDEL', busy_prefix .. pool, host) end
  end
end
"""

#: KEYS: workers (JSON), load lines, seen, sums. ARGV: hostname, JSON entry, load line ('' = none), updated_at,
#: busy prefix. A worker too old to say what it holds publishes no line: its JSON entry alone (as before).
PUBLISH_LUA = APPLY_LUA + r"""
local host, line = ARGV[1], ARGV[3]
call('HSET', KEYS[1], host, ARGV[2])
if line == '' then return 0 end
local old = call('HGET', KEYS[2], host)
-- Everything after the time field unchanged: the sums stay (a steady worker re-publishes the same load).
if not old or match(old, '\t.*$') ~= match(line, '\t.*$') then
  if old then apply(KEYS[4], ARGV[5], host, old, -1) end
  apply(KEYS[4], ARGV[5], host, line, 1)
end
call('HSET', KEYS[2], host, line)
call('ZADD', KEYS[3], ARGV[4], host)
return 1
"""

#: KEYS: workers, load lines, seen, sums. ARGV: hostname, busy prefix. Returns 1 if a JSON entry was removed.
REMOVE_LUA = APPLY_LUA + r"""
local host = ARGV[1]
local old = call('HGET', KEYS[2], host)
if old then apply(KEYS[4], ARGV[2], host, old, -1) end
call('HDEL', KEYS[2], host)
call('ZREM', KEYS[3], host)
return call('HDEL', KEYS[1], host)
"""

#: KEYS: workers, load lines, seen, sums, lock. ARGV: busy prefix, lock seconds. Recomputes sums, seen and
#: the busy hashes from the lines (dropping lines without a JSON entry); at most once per lock period.
REBUILD_LUA = APPLY_LUA + r"""
if not call('SET', KEYS[5], '1', 'NX', 'EX', ARGV[2]) then return 0 end
local pools = {}
for _, field in ipairs(call('HKEYS', KEYS[4])) do
  local pool = match(field, '^w\t(.*)$')
  if pool then pools[pool] = true end
end
local lines = call('HGETALL', KEYS[2])
for i = 2, #lines, 2 do
  local pool = match(lines[i], '^[^\t]*\t([^\t]*)\t')
  if pool then pools[pool] = true end
end
for pool in pairs(pools) do call('DEL', ARGV[1] .. pool) end
call('DEL', KEYS[3], KEYS[4])
for i = 1, #lines, 2 do
  local host, line = lines[i], lines[i + 1]
  if call('HEXISTS', KEYS[1], host) == 1 and valid(line) then
    apply(KEYS[4], ARGV[1], host, line, 1)
    call('ZADD', KEYS[3], match(line, HEAD), host)
  else
    call('HDEL', KEYS[2], host)
  end
end
return 1
"""
