-- POST the same body (file BENCH_BODY) to the URL's path, as fast as the connections allow.
-- Used for ingest of one report per request and for the bare Flask baseline.
package.path = (os.getenv("BENCH_LUA_DIR") or "bench/wrk") .. "/?.lua;" .. package.path
local common = require("common")

wrk.method = "POST"
wrk.body = common.read(common.env("BENCH_BODY", "var/bench/report.json"))
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  common.done_json(summary, latency)
end
