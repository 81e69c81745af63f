-- GET / (nginx return 200).
dofile(os.getenv("WRK_DIR") .. "/common.lua")
done = result
