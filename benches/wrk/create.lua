-- POST /v1/sessions?context=churn (a context with when_full = "evict-oldest",
-- so the region never refuses).
dofile(os.getenv("WRK_DIR") .. "/common.lua")
function request() return wrk.format("POST", "/v1/sessions?context=churn") end
done = result
