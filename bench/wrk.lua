-- wrk script: POST one JSON body (when BENCH_BODY is set) and print a JSON summary line.
local body = os.getenv("BENCH_BODY")
if body and body ~= "" then
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_SUMMARY {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"non2xx": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
