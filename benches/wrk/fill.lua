-- Fill the default context with new sessions, each holding one 256-byte
-- value: POST /v1/sessions, then PUT /v1/sessions/{id}/attributes/x with the
-- id the POST returned (two HTTP requests per session).
--
-- A request() does not know which connection it is for, so it takes any id
-- whose POST has answered; each id gets exactly one PUT. Each thread stops
-- once FILL_PER_THREAD of its sessions hold their value; the last thread to
-- stop sends SIGINT so wrk ends then instead of sleeping out -d. The time is
-- taken in-process (CLOCK_MONOTONIC, first request to last PUT answer), so
-- the SIGINT delay is not counted. Prints one line:
--   FILL sessions=N secs=S rate=R bad=B   (B = responses other than 201/204/200)
-- Needs LuaJIT's ffi (Debian's wrk has it).
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } fill_timespec;
  int clock_gettime(int clk, fill_timespec *ts);
  int getpid(void);
  int kill(int pid, int sig);
]]
local ts = ffi.new("fill_timespec")
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

local dir = os.getenv("FILL_DIR")          -- marker files: one per finished thread
local nthreads = tonumber(os.getenv("FILL_THREADS"))
local quota = tonumber(os.getenv("FILL_PER_THREAD"))

local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
  thread:set("id", #threads)
end

local me, t0, posted, filled, bad, finished, verifying
local queue, head, tail = {}, 1, 0
local body = string.rep("v", 256)
local create = wrk.format("POST", "/v1/sessions")
local idle = wrk.format("GET", "/healthz")

function init(args)
  me = wrk.thread:get("id")
  posted, filled, bad, finished = 0, 0, 0, false
  -- wrk calls request() once on its first thread before the run, only to
  -- count the requests in the returned string; that call sends nothing.
  verifying = (me == 1)
end

local function finish()
  if finished then return end
  finished = true
  wrk.thread:set("t0", t0)
  wrk.thread:set("t1", now())
  wrk.thread:set("filled", filled)
  wrk.thread:set("bad", bad)
  io.open(dir .. "/done." .. me, "w"):close()
  local all = true
  for i = 1, nthreads do
    local f = io.open(dir .. "/done." .. i, "r")
    if f then f:close() else all = false end
  end
  -- Each thread writes its marker before it looks for the others, so the
  -- last one to finish always sees them all.
  if all then ffi.C.kill(ffi.C.getpid(), 2) end
  wrk.thread:stop()
end

function request()
  if verifying then
    verifying = false
    return create
  end
  if not t0 then t0 = now() end
  if head <= tail then
    local id = queue[head]
    queue[head] = nil
    head = head + 1
    return wrk.format("PUT", "/v1/sessions/" .. id .. "/attributes/x", nil, body)
  end
  if posted < quota then
    posted = posted + 1
    return create
  end
  return idle -- the last PUTs are still in flight
end

function response(status, headers, b)
  if status == 201 then
    local id = b:match('"id":"([^"]+)"')
    if id then
      tail = tail + 1
      queue[tail] = id
    else
      bad = bad + 1
    end
  elseif status == 204 then
    filled = filled + 1
    if filled >= quota then finish() end
  elseif status ~= 200 then
    bad = bad + 1
    finish() -- a refused create or a failed PUT: stop and let the caller fail
  end
end

function done(summary, latency, requests)
  local n, b, t0min, t1max = 0, 0, math.huge, 0
  for _, t in ipairs(threads) do
    n = n + (t:get("filled") or 0)
    b = b + (t:get("bad") or 0)
    t0min = math.min(t0min, t:get("t0") or math.huge)
    t1max = math.max(t1max, t:get("t1") or 0)
  end
  local secs = t1max - t0min
  io.write(string.format("FILL sessions=%d secs=%.3f rate=%.0f bad=%d\n", n, secs, n / secs, b))
end
