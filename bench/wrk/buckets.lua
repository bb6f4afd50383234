-- POST buckets of BENCH_BUCKET unique delivery reports (messageIds "<prefix>-<thread>-<n>"),
-- BENCH_TOTAL buckets in all, shared evenly by wrk's threads; then each thread stops by itself.
-- A thread stops only when every bucket it sent has been answered, so no report is in flight
-- when wrk exits; after its quota a connection only sends GET /healthz (nothing ingested).
-- done() reports how many buckets were answered 200 (their reports are acknowledged).
-- wrk sleeps for its whole -d duration even when every thread has stopped: a thread that is
-- done writes BENCH_DONE_DIR/done-<thread>, and the bench then ends wrk with SIGINT.
-- wrk calls request() once before the run on thread 0 only, to check it, and never sends that
-- one: the first call of every thread returns a GET /healthz, so no bucket is made and lost.
package.path = (os.getenv("BENCH_LUA_DIR") or "bench/wrk") .. "/?.lua;" .. package.path
local common = require("common")

local threads_list = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  threads_list[#threads_list + 1] = thread
end

local size = tonumber(common.env("BENCH_BUCKET", "100"))
local threads = tonumber(common.env("BENCH_THREADS", "1"))
local quota = math.floor(tonumber(common.env("BENCH_TOTAL", "1000")) / threads)
local prefix = common.env("BENCH_PREFIX", "bench")
local query = common.env("BENCH_QUERY", "")
local done_dir = common.env("BENCH_DONE_DIR", "")
local sent, answered, ok, bad, calls = 0, 0, 0, 0, 0
local finished = false

function init(args)
  prefix = prefix .. "-" .. tostring(tid)
end

function request()
  calls = calls + 1
  if calls == 1 or sent >= quota then
    return wrk.format("GET", "/healthz")
  end
  local parts = {}
  for i = 1, size do
    local n = sent * size + i
    parts[i] = common.report(string.format("%s-%d", prefix, n), string.format("4179%08d", n), prefix)
  end
  sent = sent + 1
  return wrk.format("POST", "/infobip/dlr" .. query, {["Content-Type"] = "application/json"},
                    '{"results":[' .. table.concat(parts, ",") .. ']}')
end

function response(status, headers, body)
  -- A 200 without "accepted" is a /healthz answer (another connection, past the quota).
  local is_health = status == 200 and not string.find(body or "", '"accepted"', 1, true)
  if not is_health then
    answered = answered + 1
    if status == 200 then ok = ok + 1 else bad = bad + 1 end
    ok_count, bad_count = ok, bad  -- globals, read by done() through thread:get
  end
  if answered >= quota and not finished then
    finished = true
    if done_dir ~= "" then
      local f = io.open(done_dir .. "/done-" .. tostring(tid), "w")
      if f then f:write(tostring(ok)) f:close() end
    end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local ok_total, bad_total = 0, 0
  for _, t in ipairs(threads_list) do
    ok_total = ok_total + (t:get("ok_count") or 0)
    bad_total = bad_total + (t:get("bad_count") or 0)
  end
  common.done_json(summary, latency, {buckets_ok = ok_total, buckets_bad = bad_total,
                                      reports_ok = ok_total * size})
end
