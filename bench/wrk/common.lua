-- Shared by the bench wrk scripts: settings from the environment and the JSON `done()` line.
-- wrk runs each script once per thread (setup/init/request/...) and once more for done().

local M = {}

function M.env(name, default)
  local value = os.getenv(name)
  if value == nil or value == "" then return default end
  return value
end

function M.read(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

-- One report in Infobip's v2 push shape (as tests/samples.py builds it); a distinct `to` per
-- message, as a campaign has, so the recipient index holds one member per message.
function M.report(message_id, to, bulk_id)
  return string.format(
    '{"bulkId":"%s","messageId":"%s","to":"%s","sentAt":"2026-11-29T10:00:00.000+0000",' ..
    '"doneAt":"2026-11-29T10:00:07.134+0000","smsCount":1,' ..
    '"price":{"pricePerMessage":0.01,"currency":"EUR"},' ..
    '"status":{"groupId":3,"groupName":"DELIVERED","id":5,"name":"DELIVERED_TO_HANDSET",' ..
    '"description":"Message delivered to handset"},' ..
    '"error":{"groupId":0,"groupName":"OK","id":0,"name":"NO_ERROR","description":"No Error",' ..
    '"permanent":false}}',
    bulk_id, message_id, to)
end

-- The line the bench reads: requests/s and latency percentiles in milliseconds.
function M.done_json(summary, latency, extra)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  local parts = {
    string.format('"requests":%d', summary.requests),
    string.format('"seconds":%.3f', seconds),
    string.format('"rps":%.1f', summary.requests / seconds),
    string.format('"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
                  e.connect, e.read, e.write, e.status, e.timeout),
    string.format('"latency_ms":{"mean":%.3f,"max":%.3f,"p50":%.3f,"p90":%.3f,"p99":%.3f,"p999":%.3f}',
                  latency.mean / 1000, latency.max / 1000,
                  latency:percentile(50) / 1000, latency:percentile(90) / 1000,
                  latency:percentile(99) / 1000, latency:percentile(99.9) / 1000),
  }
  for k, v in pairs(extra or {}) do
    parts[#parts + 1] = string.format('"%s":%s', k, tostring(v))
  end
  io.write("BENCH_JSON " .. "{" .. table.concat(parts, ",") .. "}\n")
end

return M
