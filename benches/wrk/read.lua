-- GET /v1/session/attributes/x by cookie over the pre-created sessions.
dofile(os.getenv("WRK_DIR") .. "/common.lua")
local ids
function init(args) ids = load_ids(); math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16)) end
function request()
  local id = ids[math.random(#ids)]
  return wrk.format("GET", "/v1/session/attributes/x", { ["Cookie"] = "SESSIONID=" .. id })
end
done = result
