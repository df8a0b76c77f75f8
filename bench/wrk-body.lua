-- wrk script: the method and an optional body file come from the environment,
-- so one script serves the GET and the POST workloads of bench/run.py.
--   WRK_METHOD=POST WRK_BODY_FILE=.run/bench-2k.json wrk -s bench/wrk-body.lua URL
wrk.method = os.getenv("WRK_METHOD") or "GET"
local path = os.getenv("WRK_BODY_FILE")
if path and path ~= "" then
  local f = assert(io.open(path, "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
end
