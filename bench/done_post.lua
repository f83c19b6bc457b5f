-- wrk script: POST /done/<token> with each learner's own session cookie and CSRF token.
--
--   wrk -t2 -c20 -d30s -s bench/done_post.lua http://127.0.0.1:PORT -- PAIRS.lua RATE THREADS
--
-- PAIRS.lua returns a table of {path, cookie, csrf} (bench/web_load.py writes it
-- after a real GET of every page). RATE (requests/second over all threads; 0 =
-- as fast as possible) paces requests wrk2-style: each thread books send slots
-- at a fixed interval and delay() waits for the next one. Latency is measured
-- from send to response, not from the booked slot (wrk2 corrects for
-- coordinated omission; this does not), so keep enough connections that a
-- slot never waits for a free one.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_usec; } nudger_timeval;
  int gettimeofday(nudger_timeval *tv, void *tz);
]]
local tv = ffi.new("nudger_timeval")
local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
end

local counter = 1

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local pairs_, index, step, interval, slot

function init(args)
  pairs_ = dofile(args[1])
  local rate = tonumber(args[2] or "0")
  -- Threads take interleaved pairs so no two threads post the same token.
  index = id
  step = tonumber(args[3] or "1")
  interval = rate > 0 and (1000 * step / rate) or 0
  slot = now_ms()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

function request()
  local p = pairs_[((index - 1) % #pairs_) + 1]
  index = index + step
  wrk.headers["Cookie"] = p[2]
  return wrk.format(nil, p[1], nil, "csrf_token=" .. p[3] .. "&note=bench")
end

function delay()
  if interval == 0 then return 0 end
  -- Slots are never skipped: a thread that fell behind sends at once until it has
  -- caught up, so the rate asked is the rate offered (and stalls show in the latency).
  slot = slot + interval
  return math.max(0, math.floor(slot - now_ms()))
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_ms": %.2f, "p90_ms": %.2f, ' ..
    '"p99_ms": %.2f, "max_ms": %.2f, "mean_ms": %.2f, "errors_status": %d, "errors_connect": %d, ' ..
    '"errors_read": %d, "errors_timeout": %d}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.timeout))
end
