-- bench/serve/post.lua — wrk script: POST one sample (body.json) to /score,
-- with the key in $KEY (if set).
-- RATE > 0 paces the load (open loop): request k of a thread is due at
-- t0 + k / RATE, whether or not the server kept up (a late server does not
-- slow the client down, as a closed loop where each connection waits for
-- its answer would). wrk's delay() has 1 ms resolution, so a request leaves
-- within 0.5 ms of its due time; with enough connections (CONNS well above
-- RATE x latency) a request never waits for a free connection, and the
-- ones that did (a connection freed more than 1 ms after the due time) are
-- counted as "late". Latency is measured by wrk from the request's write.
-- One wrk thread (-t1): RATE is that thread's rate.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("KEY")
if key and key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
local f = assert(io.open(os.getenv("BODY"), "r"))
wrk.body = f:read("*a")
f:close()

local rate = tonumber(os.getenv("RATE") or "0")
local threads = {}
function setup(thread) table.insert(threads, thread) end

late, paced = 0, 0
if rate > 0 then
  local ffi = require("ffi")
  ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } kusari_ts;
    int clock_gettime(int clk, kusari_ts *ts);
  ]]
  local ts = ffi.new("kusari_ts")
  local function now_ms()
    ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local step = 1000 / rate
  local due = nil
  function delay()
    local now = now_ms()
    if not due then due = now end
    due = due + step
    paced = paced + 1
    local d = due - now
    if d < -1 then late = late + 1 end
    if d <= 0 then return 0 end
    return math.floor(d + 0.5)
  end
end

function done(summary, latency, requests)
  local l, p = 0, 0
  for _, t in ipairs(threads) do l = l + (t:get("late") or 0); p = p + (t:get("paced") or 0) end
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f requests=%d non2xx=%d socket_errors=%d late=%d/%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, l, p))
end
