-- POST /api/v1/coupons/{coupon}/issue, each request as the next user of a pool of tokens.
-- The pool is read from tokens.txt (one bearer token per line) written by bench/http-memory.
local tokens = {}
local path = os.getenv("STOCKADE_COUPON_PATH") or "/api/v1/coupons/1/issue"
for line in io.lines(os.getenv("STOCKADE_TOKENS") or "tokens.txt") do
  tokens[#tokens + 1] = line
end
local counter = 0
local statuses = {}

function setup(thread)
  thread:set("offset", counter)
  counter = counter + 1
end

function init(args)
  n = offset
end

request = function()
  n = n + 7 -- threads interleave over the pool
  local token = tokens[(n % #tokens) + 1]
  return wrk.format("POST", path, { ["Authorization"] = "Bearer " .. token }, "")
end

response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

done = function(summary, latency, requests)
  io.write(string.format("p50_ms=%.3f p99_ms=%.3f\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
