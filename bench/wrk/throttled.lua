-- Like post.lua, at a fixed total rate BENCH_RATE requests/s (spread over wrk's threads), for
-- the latency bar. delay() schedules each request on a per-thread clock; a thread that falls
-- behind does not burst to catch up. wrk is closed-loop: latency is measured from the moment a
-- request is sent, so time a request waited for a free connection is not in it (coordinated
-- omission): the percentiles are service times at that rate, see docs/BENCHMARKS.md.
package.path = (os.getenv("BENCH_LUA_DIR") or "bench/wrk") .. "/?.lua;" .. package.path
local common = require("common")
local ffi = require("ffi")

ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

wrk.method = "POST"
wrk.body = common.read(common.env("BENCH_BODY", "var/bench/report.json"))
wrk.headers["Content-Type"] = "application/json"

local threads = tonumber(common.env("BENCH_THREADS", "1"))
local interval = 1000.0 * threads / tonumber(common.env("BENCH_RATE", "100"))  -- ms per request
local next_at = nil

function delay()
  local now = now_ms()
  if next_at == nil or next_at < now - interval then next_at = now end
  next_at = next_at + interval
  return math.max(0, math.floor(next_at - now + 0.5))
end

function done(summary, latency, requests)
  common.done_json(summary, latency, {target_rps = common.env("BENCH_RATE", "0")})
end
