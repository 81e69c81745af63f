-- GET of wrk's URL carrying a pre-made session cookie: $COOKIE_NAME=<a line
-- of $IDS_FILE>. Thread t of $WRK_THREADS takes every $WRK_THREADS-th id from
-- the t-th and goes round them in order, so the threads never share a session
-- and two requests in flight almost never do (each thread has far fewer
-- connections than ids).
dofile(os.getenv("WRK_DIR") .. "/common.lua")
local next_tid = 0
function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end
local mine, i, name = {}, 0, nil
function init(args)
  local all = load_ids()
  local n = tonumber(os.getenv("WRK_THREADS") or "1")
  for k = tid + 1, #all, n do mine[#mine + 1] = all[k] end
  if #mine == 0 then error("no session ids for thread " .. tid .. " in $IDS_FILE") end
  name = os.getenv("COOKIE_NAME")
end
function request()
  i = i % #mine + 1
  return wrk.format("GET", wrk.path, { ["Cookie"] = name .. "=" .. mine[i] })
end
done = result
