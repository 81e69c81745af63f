-- Shared by the wrk scripts: load session ids from $IDS_FILE (one per line)
-- and print one machine-readable RESULT line when the run ends.
local ids = {}
function load_ids()
  local path = os.getenv("IDS_FILE")
  if path then
    for line in io.lines(path) do ids[#ids + 1] = line end
  end
  return ids
end
function result(summary, latency, requests)
  local secs = summary.duration / 1e6
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
               + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT rps=%.0f p50_us=%d p99_us=%d requests=%d errors=%d non2xx=%d\n",
    summary.requests / secs, latency:percentile(50), latency:percentile(99),
    summary.requests, errors, summary.errors.status))
end
