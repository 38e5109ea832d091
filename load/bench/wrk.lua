-- wrk script of `waitroom bench`: each request carries the next credential from a file, and
-- with BENCH_RATE set the requests leave on a fixed schedule (an open loop) rather than as
-- fast as the server answers. done() prints one line, "BENCH_JSON {...}", for the bench.
--
-- Environment:
--   BENCH_METHOD   GET (default) or POST
--   BENCH_HEADER   a header sent with a value per request (e.g. Cookie), with BENCH_VALUES
--   BENCH_VALUES   a file of header values, one per line: each thread starts at its own
--                  offset and goes round in order, so every value is used before any repeats
--   BENCH_RATE     requests per second over all threads; 0 or unset: closed loop
--   BENCH_THREADS  the -t given to wrk
--
-- The schedule: thread k sends its n-th request at start + n * threads / rate. A request whose
-- time has passed (every connection was busy) leaves at once and counts as late; `lag_max_ms`
-- is the latest one. wrk measures latency from the moment a request is written, so when
-- requests run late the latencies leave out the time spent waiting to be sent: the late count
-- says whether that happened.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]])
local timespec = ffi.new("bench_timespec")
local CLOCK_MONOTONIC = 1

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
end

local method = os.getenv("BENCH_METHOD") or "GET"
local header = os.getenv("BENCH_HEADER") or ""
local rate = tonumber(os.getenv("BENCH_RATE") or "0") or 0
local threads_n = tonumber(os.getenv("BENCH_THREADS") or "1") or 1

-- setup() and done() run in a separate Lua state; `threads` lives there.
local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  threads[#threads + 1] = thread
end

local values, count, at = {}, 0, 0
-- Read by done() through thread:get(), so globals.
late, lag_max_ms = 0, 0

function init(args)
  local path = os.getenv("BENCH_VALUES")
  if path ~= nil and path ~= "" then
    for line in io.lines(path) do
      if line ~= "" then
        count = count + 1
        values[count] = line
      end
    end
    at = math.floor(count * (thread_index or 0) / threads_n)
  end
end

function request()
  if count == 0 then
    return wrk.format(method)
  end
  at = at % count + 1
  return wrk.format(method, nil, { [header] = values[at] })
end

if rate > 0 then
  local interval = 1000 * threads_n / rate
  local start, sent = nil, 0

  function delay()
    local now = now_ms()
    if start == nil then
      start = now
    end
    local wait = start + sent * interval - now
    sent = sent + 1
    if wait < -1 then
      late = late + 1
      if -wait > lag_max_ms then
        lag_max_ms = -wait
      end
    end
    if wait < 0 then
      return 0
    end
    return wait
  end
end

function done(summary, latency, requests)
  local late_total, lag = 0, 0
  for _, thread in ipairs(threads) do
    late_total = late_total + (thread:get("late") or 0)
    lag = math.max(lag, thread:get("lag_max_ms") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "socket_errors": %d, "status_errors": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "late": %d, '
      .. '"lag_max_ms": %.3f}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50.0), latency:percentile(90.0), latency:percentile(99.0), latency.max,
    late_total, lag
  ))
end
