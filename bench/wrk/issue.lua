-- POST /api/v1/coupons/{coupon}/issue, each request as the next user of a pool of tokens.
-- The pool is read from STOCKADE_TOKENS (one bearer token per line). Each wrk thread formats
-- every request once, in init(), and defines no response() callback, so that wrk
-- neither builds a request nor parses a response in Lua while it measures: on a machine that
-- the service shares with its load, every cycle wrk spends is one the service does not get.
-- Server errors are counted by the service itself (http_requests_total in /metrics).
local tokens = {}
local path = os.getenv("STOCKADE_COUPON_PATH") or "/api/v1/coupons/1/issue"
for line in io.lines(os.getenv("STOCKADE_TOKENS") or "tokens.txt") do
  tokens[#tokens + 1] = line
end
local threads = 0

function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end

function init(args)
  requests = {}
  for i, token in ipairs(tokens) do
    requests[i] = wrk.format("POST", path, { ["Authorization"] = "Bearer " .. token }, "")
  end
  -- Each thread walks the whole pool from its own starting point.
  n = (offset * 10007) % #requests
end

request = function()
  n = n % #requests + 1
  return requests[n]
end

done = function(summary, latency, requests)
  io.write(string.format("p50_ms=%.3f p99_ms=%.3f\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
