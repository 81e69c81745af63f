-- PUT of a 256-byte value to /v1/session/attributes/x by cookie.
dofile(os.getenv("WRK_DIR") .. "/common.lua")
local ids
local body = string.rep("w", 256)
function init(args) ids = load_ids(); math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16)) end
function request()
  local id = ids[math.random(#ids)]
  return wrk.format("PUT", "/v1/session/attributes/x", { ["Cookie"] = "SESSIONID=" .. id }, body)
end
done = result
