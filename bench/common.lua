-- Shared by every scenario (bench/run.py prepends it): counts statuses per thread and prints
-- one machine-readable line at the end.
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
  fivexx = 0
  status503 = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
  if status >= 500 then fivexx = fivexx + 1 end
  if status == 503 then status503 = status503 + 1 end
end

function done(summary, latency, requests)
  local non, five, s503 = 0, 0, 0
  for _, t in ipairs(threads) do
    non = non + t:get("non2xx")
    five = five + t:get("fivexx")
    s503 = s503 + t:get("status503")
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f p50_us=%d p99_us=%d max_us=%d non2xx=%d fivexx=%d s503=%d socket_errors=%d\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    latency.max, non, five, s503, e.connect + e.read + e.write + e.timeout))
end
