-- wrk script: POST one JSON body (when BENCH_BODY is set) and print a JSON summary line.
-- With BENCH_COUNT_STATUS=1 it also counts the responses by status code (a Lua call per
-- response, so only the overload runs ask for it).
local body = os.getenv("BENCH_BODY")
if body and body ~= "" then
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

if os.getenv("BENCH_COUNT_STATUS") == "1" then
  statuses = {}
  function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    local seen = thread:get("statuses")
    if seen then
      for status, n in pairs(seen) do
        counts[#counts + 1] = string.format('"%d": %d', status, n)
      end
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_SUMMARY {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"non2xx": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d, '
    .. '"statuses": [%s]}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout,
    "{" .. table.concat(counts, "}, {") .. "}"))
end
