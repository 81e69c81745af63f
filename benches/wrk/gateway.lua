-- GET through a gateway with a logged-in session: the cookie comes from $COOKIE.
dofile(os.getenv("WRK_DIR") .. "/common.lua")
wrk.headers["Cookie"] = os.getenv("COOKIE") or ""
done = result
