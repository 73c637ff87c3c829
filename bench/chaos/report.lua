-- wrk script for bench/chaos.sh: counts every response by status (wrk itself only counts "non-2xx/3xx")
-- and prints one machine-readable line after the run:
--   CHAOSJSON {"requests":..,"statuses":{"200":..},"err_connect":..,...,"p99_us":..}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local all = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    if s then
      for k, v in pairs(s) do all[k] = (all[k] or 0) + v end
    end
  end
  local parts = {}
  for k, v in pairs(all) do table.insert(parts, string.format('"%d":%d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'CHAOSJSON {"requests":%d,"duration_us":%d,"statuses":{%s},' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_timeout":%d,' ..
    '"p50_us":%.1f,"p99_us":%.1f,"max_us":%.1f}\n',
    summary.requests, summary.duration, table.concat(parts, ","),
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
