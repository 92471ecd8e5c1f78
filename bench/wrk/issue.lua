-- POST /api/v1/coupons/{coupon}/issue, each request as the next user of a pool of tokens.
-- The pool is read from tokens.txt (one bearer token per line) written by bench/http-memory.
local tokens = {}
local path = os.getenv("STOCKADE_COUPON_PATH") or "/api/v1/coupons/1/issue"
for line in io.lines(os.getenv("STOCKADE_TOKENS") or "tokens.txt") do
  tokens[#tokens + 1] = line
end
local counter = 0
local threads = {}
server_errors = 0

function setup(thread)
  thread:set("offset", counter)
  counter = counter + 1
  threads[#threads + 1] = thread
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
  if status >= 500 then
    server_errors = server_errors + 1
  end
end

done = function(summary, latency, requests)
  local errors = 0
  for _, t in ipairs(threads) do
    errors = errors + (t:get("server_errors") or 0)
  end
  io.write(string.format("p50_ms=%.3f p99_ms=%.3f server_errors=%d\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, errors))
end
