-- Prints p50 and p99 in milliseconds after a plain wrk run.
done = function(summary, latency, requests)
  io.write(string.format("p50_ms=%.3f p99_ms=%.3f\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
