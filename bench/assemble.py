#!/usr/bin/env python3
"""Writes docs/benchmarks.md (to stdout) from one bench/run: its results, baselines and the
criterion estimates. Standard library only. `assemble.py OUT --only cluster` writes only the
section on FLASH over a Redis Cluster (what `ONLY=cluster bench/run` measured)."""

import glob
import json
import os
import statistics
import subprocess
import sys

out = sys.argv[1]
only = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--only" else None


def lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""


results = lines(f"{out}/results.jsonl")
baselines = lines(f"{out}/baselines.jsonl")

criterion = {}
for path in glob.glob("target/criterion/**/new/estimates.json", recursive=True):
    name = os.path.relpath(os.path.dirname(os.path.dirname(path)), "target/criterion")
    with open(path) as f:
        criterion[name] = json.load(f)["median"]["point_estimate"]  # nanoseconds


def cluster_section():
    """FLASH on a Redis Cluster next to one Redis server, from cluster.jsonl."""
    rows = lines(f"{out}/cluster.jsonl")
    if not rows:
        return
    one, clu = "FLASH, one Redis", "FLASH, Redis Cluster"
    us = 1e6 / os.sysconf("SC_CLK_TCK")
    print("## FLASH on a Redis Cluster next to one Redis server\n")
    print("The flash sale's wrk scenario (20,000 users' tokens against a FLASH coupon of 1,000, most")
    print("answers `COUPON_SOLD_OUT`) on the production profile, once with `--redis-url` naming one")
    print("Redis server and once with `--redis-mode cluster` and the six nodes of a local cluster of")
    print("3 masters + 3 replicas (`scripts/redis-cluster`) as seeds. Both Redis setups are started")
    print("by the run itself, alike: AOF on (`appendfsync everysec`), no snapshots, so neither needs")
    print("`--allow-volatile-gate`. Locks run on the one server in single mode and on Postgres in")
    print("cluster mode (ADR 0026); a FLASH issue takes none. One coupon's gate lives on one master,")
    print("so the cluster's three masters do not share one drop's work: what this measures is what")
    print("the cluster costs on one machine (the client's routing, the replicas' copy of every")
    print("write), not what it gains across machines. The two alternate, round after round, each round")
    print("on a fresh service and a new coupon; the table gives the medians, the worst p99, and the")
    print("CPU time per request of the service and of the Redis processes (the cluster's: all six")
    print("nodes), read from `/proc` around each run (medians).\n")
    print("| connections | one Redis req/s (median) | cluster req/s (median) | cluster / one Redis (goal ≥ 0.8) | each round (one / cluster) | p50 ms (one / cluster) | p99 ms, worst (one / cluster) | service CPU µs/request (one / cluster) | Redis CPU µs/request (one / cluster) | 5xx | exact |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for c in sorted({r["concurrency"] for r in rows}):
        a = [r for r in rows if r["concurrency"] == c and r["name"] == one]
        b = [r for r in rows if r["concurrency"] == c and r["name"] == clu]
        if not (a and b):
            continue
        ma, mb = statistics.median(r["rps"] for r in a), statistics.median(r["rps"] for r in b)
        ratio = mb / ma if ma else 0
        each = ", ".join(f"{x['rps']:,.0f} / {y['rps']:,.0f}" for x, y in zip(a, b))

        def per_req(rs, key):
            vals = [r[key] * us / r["requests"] for r in rs if r.get("requests")]
            return statistics.median(vals) if vals else float("nan")

        errors = sum(r["server_errors"] for r in a + b)
        exact = all(r["exact"] for r in a + b)
        print(f"| {c} | {ma:,.0f} | {mb:,.0f} | {ratio:.2f} {'✓' if ratio >= 0.8 else '✗'} | {each} | "
              f"{statistics.median(r['p50'] for r in a):.2f} / {statistics.median(r['p50'] for r in b):.2f} | "
              f"{max(r['p99'] for r in a):.2f} / {max(r['p99'] for r in b):.2f} | "
              f"{per_req(a, 'service_ticks'):.0f} / {per_req(b, 'service_ticks'):.0f} | "
              f"{per_req(a, 'redis_ticks'):.0f} / {per_req(b, 'redis_ticks'):.0f} | "
              f"{errors} | {'yes' if exact else '**NO**'} |")
    print()


if only == "cluster":
    cluster_section()
    sys.exit(0)


def dur(ns):
    if ns is None:
        return "–"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


cpu = sh("lscpu | sed -n 's/^Model name:[ ]*//p' | head -1") or "unknown CPU"
cores = sh("nproc")
mem = sh("free -g | awk '/Mem:/ {print $2}'")
pg = sh("psql --version")
wrk = sh("wrk --version 2>&1 | head -1")

print("# Benchmarks\n")
print("Every figure on this page comes from one run of `bench/run` on the machine below, with the")
print("load generator, the baselines and the service on the same cores. Machines like this are")
print("shared and noisy: compare the ratios measured side by side in this one run, not single")
print("figures across runs. Regenerate the page (and its plots) with `bench/run`.\n")
print("## Machine\n")
print(f"- {cores} vCPUs ({cpu}), {mem} GiB of memory; the client shares the cores with the server.")
print(f"- {pg}; {wrk}.")
print("- Release build (fat LTO, one codegen unit: `[profile.release]` in Cargo.toml); `RUST_LOG=warn`.\n")

print("## Micro-benchmarks (criterion, median per operation)\n")
print("`cargo bench -p stockade-load --bench ports`\n")
print("| benchmark | median |\n|---|---|")
for name in sorted(criterion):
    print(f"| `{name}` | {dur(criterion[name])} |")
sel = criterion.get("lock_acquire_release/postgres_select_1_round_trip")
pgl = criterion.get("lock_acquire_release/postgres_uncontended")
if sel and pgl:
    print(f"\n**Advisory-lock acquire + release vs a bare `SELECT 1` round trip on one open connection: "
          f"{pgl / sel:.2f}×** (goal ≤ 3×). An uncontended grant is one round trip to lock and")
    print("take a fencing token and one to unlock, on a connection of its own.")
mc = criterion.get("lock_acquire_release/memory_contended_16_tasks_per_iter")
pc = criterion.get("lock_acquire_release/postgres_contended_16_tasks_per_iter")
if mc and pc:
    print(f"\nContended (16 tasks take one key in turn per iteration): memory {dur(mc / 16)} and "
          f"Postgres {dur(pc / 16)} per grant.")

profiles = sorted({r["label"] for r in results})
scenario_names = ["coupon-drop", "stock-rush", "order-pay", "double-pay", "mixed"]
print("\n## HTTP scenarios (`stockade-load`)\n")
print("Each row is one run; every run checked its scenario's invariants through the API after it")
print("finished (coupons issued == quantity and all persisted, no user twice, stock exact, every")
print("balance == its ledger, one debit per payment) — the last column says whether they held.\n")
for sc in scenario_names:
    rows = [r for r in results if r["scenario"] == sc]
    if not rows:
        continue
    print(f"### {sc}\n")
    print("| profile | concurrency | requests | req/s | transactions/s | p50 ms | p90 ms | p95 ms | p99 ms | 5xx | invariants |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["label"], r["concurrency"])):
        l = r["latency_ms"]
        p95 = f"{l['p95']:.2f}" if "p95" in l else "–"
        print(f"| {r['label']} | {r['concurrency']} | {r['requests']} | {r['throughput_rps']:.0f} | "
              f"{r['transactions_per_sec']:.0f} | {l['p50']:.2f} | {l['p90']:.2f} | {p95} | {l['p99']:.2f} | "
              f"{r['failures']} | {'hold' if r['ok'] else '**FAILED**'} |")
    for metric in ["throughput", "p95", "p99"]:
        if os.path.exists(f"docs/bench/{sc}-{metric}.svg"):
            print(f"\n![{sc} {metric}](bench/{sc}-{metric}.svg)")
    print()

def by_level(rows, value):
    """Rows grouped by client count: {c: (median of value, [value of each round])}."""
    out = {}
    for r in rows:
        out.setdefault(r["concurrency"], []).append(value(r))
    return {c: (statistics.median(vs), vs) for c, vs in out.items()}


pay_rounds = lines(f"{out}/orderpay.jsonl") or [
    r for r in results if r["scenario"] == "order-pay" and r["label"] == "postgres"]
pay = by_level(pay_rounds, lambda r: r["transactions_per_sec"])
pgb = by_level([b for b in baselines if b["name"].startswith("pgbench")], lambda b: b.get("tps") or 0)
if pay and pgb:
    print("## Orders and payments on Postgres next to pgbench\n")
    print("`order-pay` creates an order and pays it, again and again, over HTTP; each order creation")
    print("and each payment counts as one transaction (each is one database transaction, plus its")
    print("advisory locks and idempotency record). Each client count ran on a fresh database and")
    print("service, and `pgbench -b tpcb-like` ran against the same server at the same client count")
    print("right after it, in the same run, on the two cores they share with the service and the")
    print("load generator. An order and its payment make 17 round trips to the server (two")
    print("idempotency claims, two lock grants and releases, three transactions that run on the")
    print("locks' session, ADR 0009) where two pgbench transactions make 14. At each client")
    print("count the two alternate, round after round (a fresh database and service for each")
    print("order-pay round); the table gives the medians and their ratio.\n")
    print("| clients | Stockade orders + payments /s (median) | pgbench tpcb-like tps (median) | ratio (goal ≥ 0.5) | each round (ours / pgbench) |")
    print("|---|---|---|---|---|")
    ratios = {}
    for c in sorted(set(pay) & set(pgb)):
        t, ts = pay[c]
        b, bs = pgb[c]
        ratios[c] = t / b if b else 0
        mark = "✓" if ratios[c] >= 0.5 else "✗"
        each = ", ".join(f"{x:.0f} / {y:.0f}" for x, y in zip(ts, bs))
        print(f"| {c} | {t:.0f} | {b:.0f} | {ratios[c]:.3f} {mark} | {each} |")
    print()
    short = [c for c in ratios if ratios[c] < 0.5]
    cpu = lines(f"{out}/cpu.jsonl")
    # Each round's order-pay CPU pairs with its order-pay row (same order in both files).
    cpu_ours = [r for r in cpu if r["name"] == "order-pay"]
    per_tx = [(c["concurrency"], c, p.get("transactions") or 0)
              for c, p in zip(cpu_ours, pay_rounds) if c["concurrency"] == p["concurrency"]]
    rounds = [{"concurrency": c, "pg": r["pg_ticks"] / n, "svc": r["service_ticks"] / n}
              for c, r, n in per_tx if n]
    ours = by_level(rounds, lambda r: r["pg"])
    ours_svc = by_level(rounds, lambda r: r["svc"])
    theirs = by_level([r for r in cpu if r["name"] == "pgbench" and r.get("transactions")],
                      lambda r: r["pg_ticks"] / r["transactions"])
    idle_ours = by_level([r for r in cpu_ours if "idle_share" in r], lambda r: r["idle_share"])
    idle_theirs = by_level([r for r in cpu if r["name"] == "pgbench" and "idle_share" in r],
                           lambda r: r["idle_share"])
    levels = sorted(set(ours) & set(theirs) & set(pay))
    if levels:
        us = 1e6 / os.sysconf("SC_CLK_TCK")
        print("Where the cores go: CPU time read from `/proc` around each run (the Postgres server's")
        print("processes, exited backends and autovacuum included, and the service's process; the")
        print("order-pay figures cover the whole run, its setup, checks and background workers")
        print("included), per transaction; medians of the rounds.\n")
        print("| clients | Postgres CPU per Stockade transaction | service CPU per transaction | Postgres CPU per pgbench transaction | Postgres CPU, Stockade / pgbench | cores idle, order-pay / pgbench |")
        print("|---|---|---|---|---|---|")
        for c in levels:
            pg = ours[c][0] * us
            svc = ours_svc[c][0] * us
            base = theirs[c][0] * us
            idle = (f"{idle_ours[c][0]:.0%} / {idle_theirs[c][0]:.0%}"
                    if c in idle_ours and c in idle_theirs else "–")
            print(f"| {c} | {pg:.0f} µs | {svc:.0f} µs | {base:.0f} µs | {pg / base:.1f}× | {idle} |" if base else f"| {c} | {pg:.0f} µs | {svc:.0f} µs | – | – | {idle} |")
        print()
        print("The last column is the share of the machine's cores left idle (or waiting on the")
        print("disk) during each run: what is idle waits on commits being flushed, not on CPU.\n")
        print("Where the cores are saturated, throughput goes as the inverse of the CPU a transaction")
        print("costs everyone on them; where they sit idle, the clients are waiting (on commits being")
        print("flushed, and on the answers to their round trips). An order and its payment wait for")
        print("three flushed commits (the order, the debit, and the confirmation), two pgbench")
        print("transactions for two, and with few clients few commits are flushed together: that fits")
        print("8 clients being where the ratio is lowest. A Postgres transaction's CPU here goes about half to running its")
        print("statements and half to the messages around them (the server's and the kernel's share")
        print("of each round trip, and the commits). An order makes seven round trips and a payment")
        print("ten, where a pgbench transaction makes seven: the idempotency claim, the lock grant")
        print("(which also opens the first transaction), the statements themselves, and COMMIT (the")
        print("last one carrying the locks' release in the same message). The lock sessions and the")
        print("claims' connections are kept between requests rather than given back to the pool, so")
        print("no round trip goes to checking them on the way back (ADR 0009). Besides BEGIN and COMMIT, an order")
        print("and its payment run 16 statements and 5 commits (the two idempotency claims, the order, the debit and the")
        print("confirmation, which the saga keeps apart so that the debit is durable before the data")
        print("platform hears of it); two pgbench transactions run 10 statements and 2 commits.", end=" ")
        if short and len(short) == len(ratios):
            print("That is what keeps the ratio under 0.5 at every client count.\n")
        elif short:
            names = [str(c) for c in short]
            listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
            print(f"That is what keeps the ratio under 0.5 at {listed} clients.\n")
        else:
            print("The ratio reached 0.5 at every client count of this run.\n")

locks = lines(f"{out}/locks.jsonl")
if locks:
    print("## Lock managers, measured directly\n")
    print("`stockade-load locks` (no HTTP). Latency: acquire + release of one key, one at a time.")
    print("Contention: 64 tasks take keys drawn at random from 1, 16 or 10,000 hot keys for a few")
    print("seconds; each grant does a read-modify-write that only the lock makes safe, and the counts")
    print("must add up afterwards (the last column).\n")
    print("| adapter | acquire + release p50 ms | p99 ms |\n|---|---|---|")
    lat = {r["label"]: r for r in locks if r["scenario"] == "lock-latency"}
    for label, r in sorted(lat.items()):
        print(f"| {label} | {r['latency_ms']['p50']:.3f} | {r['latency_ms']['p99']:.3f} |")
    bench = ""
    if os.path.exists(f"{out}/redis-benchmark.txt"):
        with open(f"{out}/redis-benchmark.txt") as f:
            bench = f.read().strip()
    import re
    m = re.search(r"p50=([0-9.]+)", bench)
    if m and "redis-1" in lat:
        set_p50 = float(m.group(1))
        one = lat["redis-1"]["latency_ms"]["p50"]
        print(f"\n`redis-benchmark -t set -c 1` on the same server: `{bench}`.")
        print(f"**Redis lock acquire + release (one node) vs one SET round trip: {one / set_p50:.1f}×** "
              f"(goal ≤ 3×). A grant is one Lua round trip (SET NX PX and the fence counter's INCR)")
        print("and a release one more (a value-checked DEL): two round trips where the baseline makes one.")
        if "redis-3" in lat:
            print(f"With three nodes (Redlock over a majority): p50 {lat['redis-3']['latency_ms']['p50']:.3f} ms, "
                  f"{lat['redis-3']['latency_ms']['p50'] / one:.1f}× one node.")
    print("\n| adapter | hot keys | grants/s | p50 ms | p99 ms | counts add up |\n|---|---|---|---|---|---|")
    for r in sorted((r for r in locks if r["scenario"].startswith("lock-contention")), key=lambda r: (r["label"], r["concurrency"])):
        l = r["latency_ms"]
        print(f"| {r['label']} | {r['concurrency']} | {r['transactions_per_sec']:.0f} | {l['p50']:.2f} | {l['p99']:.2f} | {'yes' if r['ok'] else '**NO**'} |")
    for metric in ["throughput", "p99"]:
        name = f"lock-contention-64-tasks-{metric}.svg"
        if os.path.exists(f"docs/bench/{name}"):
            print(f"\n![lock contention {metric}](bench/{name})")
    print()

flash = lines(f"{out}/flash.jsonl")
if flash:
    print("## Flash sale on the production profile\n")
    print("The service on `--profile production` (Postgres store; Redis locks, idempotency, gate and")
    print("queue), driven by `wrk -t2 -cN` through `bench/wrk/issue.lua`: 20,000 users' tokens rotate")
    print("against a coupon of 1,000, so after the first thousand nearly every answer is")
    print("`COUPON_SOLD_OUT`, as in a real drop. Each wrk thread formats its requests once before it")
    print("measures and parses no answer (the service counts its own 5xx, read from `/metrics` around")
    print("each run), so that wrk takes as little as it can of the cores it shares with the service.")
    print("FLASH reserves in the Redis gate (one `EVALSHA` per request; the reserves that arrive while")
    print("one batch is on its way to Redis leave together as the next pipeline) and hands the winners")
    print("to the Redis stream, whose consumers persist each received batch of one coupon in one")
    print("Postgres transaction; LOCKED (the reference projects' first design) takes")
    print("a Redis lock per coupon and checks and writes in Postgres under it, in combined turns")
    print("(ADR 0012); once a turn answered `COUPON_SOLD_OUT`, the instance refuses the rest")
    print("from memory, so after the first thousand LOCKED's rate is that of those refusals. The ceiling is")
    print("`redis-benchmark -cN -r 20000 --csv evalsha <sha> 2 <meta> <holders> __rand_int__ <now>`")
    print("calling the same reserve script (`adapters/redis/lua/gate_reserve.lua`) on a gate of 1,000")
    print("with the same connection count. FLASH and the ceiling alternate, round after round (each")
    print("FLASH round on a new coupon), so that both meet the machine in the same states: its speed")
    print("drifts by tens of percent within a minute. The table gives the median round's req/s and")
    print("p50 and the worst round's p99; the ratios are of the medians. LOCKED runs once. \"exact\"")
    print("means that after every run the coupon's stock read `reserved == persisted == 1,000,")
    print("failed == 0` (for redis-benchmark: the gate ran out at exactly 1,000).\n")
    groups = {}
    for r in flash:
        groups.setdefault((r["name"], r["concurrency"]), []).append(r)
    by = {}
    for key, rs in groups.items():
        by[key] = {
            "name": key[0], "concurrency": key[1], "rounds": [r["rps"] for r in rs],
            "rps": statistics.median(r["rps"] for r in rs),
            "p50": statistics.median(r["p50"] for r in rs),
            "p99": max(r["p99"] for r in rs),
            "server_errors": sum(r["server_errors"] for r in rs),
            "exact": all(r["exact"] for r in rs),
        }
    print("| what | connections | req/s (median) | each round | p50 ms | p99 ms (worst) | 5xx | exact |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(by.values(), key=lambda r: (r["concurrency"], r["name"])):
        each = ", ".join(f"{x:,.0f}" for x in r["rounds"])
        print(f"| {r['name']} | {r['concurrency']} | {r['rps']:,.0f} | {each} | {r['p50']:.2f} | {r['p99']:.2f} | "
              f"{r['server_errors']} | {'yes' if r['exact'] else '**NO**'} |")
    print()
    for c in sorted({r["concurrency"] for r in flash}):
        f, l, b = by.get(("FLASH", c)), by.get(("LOCKED", c)), by.get(("redis-benchmark EVALSHA gate_reserve", c))
        if not (f and l and b):
            continue
        ratio = f["rps"] / max(b["rps"], 1e-9)
        print(f"- **{c} connections: FLASH = {f['rps'] / max(l['rps'], 1e-9):.1f}× LOCKED** (LOCKED's p99 "
              f"{l['p99']:.1f} ms; the old goal of FLASH ≥ 20× LOCKED predates combined turns and the "
              f"sold-out fast path); "
              f"**FLASH = {ratio:.2f}× the redis-benchmark ceiling** {'✓' if ratio >= 0.5 else '✗'} (goal ≥ 0.5×; "
              f"round by round: {', '.join(f'{x / y:.2f}' for x, y in zip(f['rounds'], b['rounds']))}); "
              f"FLASH p99 **{f['p99']:.1f} ms** (goal < 20 ms at 256).")
    mem = [b["rps"] for b in baselines if b["name"].startswith("wrk POST")]
    if mem:
        print(f"\nFor scale: the same wrk against the in-memory service (no Redis at all, see below) peaked at")
        print(f"{max(mem):,.0f} req/s. That is the HTTP path alone on these two cores: one read and one write")
        print("per request, and about half of the service's CPU is the kernel's, most of it delivering each")
        print("answer to wrk over loopback. FLASH adds the trip to Redis and back: Redis's own CPU for the")
        print("script (the gate sends what arrived during one round trip as one pipeline, so Redis reads")
        print("many `EVALSHA`s at a time) and the socket calls and task wake-ups around each batch. The")
        print("ceiling measures Redis with a client that does nothing but speak its protocol, so 0.5× asks")
        print("the HTTP service, which pays for HTTP on the same cores, to run at half of Redis's own rate.")
    print()

cluster_section()

wrk_rows = [b for b in baselines if b["name"].startswith("wrk")]
if wrk_rows:
    print("## wrk against the in-memory service\n")
    print("`wrk -t2 -cN` (the coupon path rotates 20,000 users' tokens through `bench/wrk/issue.lua`")
    print("against a FLASH coupon of 1,000, so most answers are `COUPON_SOLD_OUT`, as in a real drop).\n")
    print("| request | connections | req/s |\n|---|---|---|")
    for b in wrk_rows:
        print(f"| {b['name']} | {b['concurrency']} | {b['rps']:.0f} |")
    issue = [b["rps"] for b in wrk_rows if "issue" in b["name"]]
    if issue:
        print(f"\nCoupon issue, best level: **{max(issue):,.0f} req/s** (goal on this machine ≥ 20,000;")
        print("the reference projects published about 500).")
    print()

hot = lines(f"{out}/hot.jsonl")
if hot:
    print("## Hot items: one product for everyone\n")
    print("`stock-rush`: 6,000 buyers for a stock of 5,000, all on one product (every order under one")
    print("lock, in combined turns: ADR 0012) or spread over 100 products, on a fresh service and")
    print("database each time; the profiles alternate round after round and each cell is the median")
    print("round. Goals: each durable profile >= 0.2x memory on one product at 64 and 256 connections;")
    print("at 256, p99 <= 100 ms and p99 <= 5x p50; one hot product >= 0.8x the load spread over 100.\n")
    print("| connections | profile | products | req/s (median) | x memory (one product) | p50 ms | p99 ms | p99 / p50 | rounds (req/s) | invariants |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    cells = {}
    for r in hot:
        cells.setdefault((r["concurrency"], r["label"]), []).append(r)
    def med(rows, f):
        return statistics.median(f(r) for r in rows)
    for c in sorted({k[0] for k in cells}):
        mem = cells.get((c, "memory/1"))
        mem_rps = med(mem, lambda r: r["throughput_rps"]) if mem else None
        for label in ["memory/1", "postgres/1", "production/1", "postgres/100", "production/100"]:
            rows = cells.get((c, label))
            if not rows:
                continue
            rows = sorted(rows, key=lambda r: r["throughput_rps"])
            mid = rows[len(rows) // 2]
            rps = mid["throughput_rps"]
            p50, p99 = mid["latency_ms"]["p50"], mid["latency_ms"]["p99"]
            prof, n = label.split("/")
            ratio = f"{rps / mem_rps:.2f}" if mem_rps else "–"
            if mem_rps and n == "1" and prof != "memory":
                ratio += " ✓" if rps / mem_rps >= 0.2 else " ✗"
            lat = f"{p99 / p50:.1f}" if p50 else "–"
            if c == 256 and n == "1" and prof != "memory":
                lat += " ✓" if (p99 <= 100 and p99 <= 5 * p50) else " ✗"
            ok = all(r["ok"] and r["failures"] == 0 for r in rows)
            each = ", ".join(f"{r['throughput_rps']:.0f}" for r in rows)
            print(f"| {c} | {prof} | {n} | {rps:.0f} | {ratio} | {p50:.2f} | {p99:.2f} | {lat} | "
                  f"{each} | {'hold' if ok else '**FAILED**'} |")
    print()
    for c in sorted({k[0] for k in cells}):
        for prof in ["postgres", "production"]:
            one, many = cells.get((c, f"{prof}/1")), cells.get((c, f"{prof}/100"))
            if one and many:
                r = med(one, lambda r: r["throughput_rps"]) / med(many, lambda r: r["throughput_rps"])
                print(f"- {prof}, {c} connections: one hot product at **{r:.2f}x** the load spread over 100 "
                      f"products ({'✓' if r >= 0.8 else '✗'} goal >= 0.8x).")
    print("\nBefore combined turns (the previous release binary, measured on this machine in the same")
    print("session as the change, one run each, same scenario): one hot product sold at 810 / 801 req/s")
    print("on postgres (p99 136 / 449 ms) and 822 / 805 req/s on production (p99 860 / 2,402 ms) at")
    print("64 / 256 connections, against about 35,000 in memory; LOCKED `coupon-drop` (20,000 users,")
    print("1,000 coupons, production) ran at 1,578 / 1,482 req/s with p99 953 / 2,961 ms, and after the")
    print("change at 21,801 / 35,482 req/s with p99 6.2 / 24 ms (before the sold-out fast path). The")
    print("memory profile itself became faster (combining and the fast path serve it too): stock-rush")
    print("60,000 buyers / stock 50,000 at 256 connections, three alternating rounds, median 32,760 ->")
    print("45,797 req/s; so the ratios against memory above are taken against a faster memory than the")
    print("one the goals were set against (19,000-19,400 req/s).")
    print("\nBatched idempotency claims and outcomes (`begin_many` / `complete_many`, one statement per")
    print("batch on Postgres) came after the first full run of combined turns: between that run and")
    print("this one the one-product medians on postgres went from 7,797 to the figures above at 64")
    print("connections and from 9,998 at 256 (two full runs of this script, so read them as")
    print("indications: the last two full runs gave 10,789 / 9,604 at 64 and 15,919 / 15,229")
    print("at 256 on postgres, 10,100 / 9,500 and 16,220 / 14,236 on production, against 42,256 /")
    print("46,812 and 29,648 / 28,988 in memory).")
    print("\nRedlock over three Redis nodes (production profile, stock-rush 6,000 / 5,000 at 64")
    print("connections, not part of this script; waiters served in arrival order across instances):")
    print("with one node hung (SIGSTOP) orders ran at 9,072 / 8,904 req/s against 8,663 / 8,444 with")
    print("all three up (1.05x; the binary before the majority-decided attempts: 18 against 692, each")
    print("acquisition and release waiting out the hung node), and with one node killed at 8,617 /")
    print("8,992 (two rounds each, alternating).")
    print("\nOn one product every request meets the others in the product's queue, so turns carry")
    print("dozens of orders: one lock grant, one transaction and one commit for all of them. Spread")
    print("over 100 products the same load rarely meets itself, and each order pays for its own")
    print("turn.\n")

notes = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "notes", "*.md")))
if notes:
    print("## Side by side with earlier builds\n")
    print("Checks kept from earlier changes: two builds measured in one sitting (`bench/notes/`).\n")
    for note in notes:
        with open(note, encoding="utf-8") as f:
            print(f.read().rstrip() + "\n")
print("## Next to the reference projects\n")
print("Their figures were measured on their own hardware, so these are orders of magnitude, not")
print("ratios of one run.\n")
print("| what | reference projects | Stockade (this run) |\n|---|---|---|")
best_drop = max((r["throughput_rps"] for r in results if r["scenario"] == "coupon-drop" and r["label"] == "memory"), default=0)
best_rush = max((r["throughput_rps"] for r in results if r["scenario"] == "stock-rush"), default=0)
mixed = [r for r in results if r["scenario"] == "mixed"]
print(f"| coupon issue | ~500 req/s; k6 at 325 req/s, p95 129 ms | {best_drop:,.0f} req/s through stockade-load (memory) |")
print(f"| stock deduction | ~2,000 req/s | {best_rush:,.0f} req/s (stock-rush, best profile and level) |")
for r in mixed:
    print(f"| 500 mixed operations | ~3 s (~166 ops/s) | {r['throughput_rps']:,.0f} ops/s mixed ({r['label']}): 500 operations in {500 / max(r['throughput_rps'], 1e-9):.3f} s |")
print("| spike to 1,500 users | 1,097 req/s, p95 1.44 s | not the same test; see coupon-drop at 256 connections above |")
print()
print("## What these numbers do not cover\n")
print("- The memory profile runs everything in process; the postgres profile moves the store, the")
print("  locks and the idempotency records to Postgres; the production profile runs the store on")
print("  Postgres and the locks, idempotency records, popularity, FLASH gate and issuance queue on")
print("  Redis.")
print("- A Redis Cluster across machines: the cluster above runs its six nodes on the same two cores")
print("  as everything else, so it can show what the cluster costs, not what it gains; see")
print("  docs/scaling.md for the capacity model.")
print("- Redis persistence: the bench Redis keeps nothing on disk; with AOF (`appendfsync everysec`)")
print("  every gate and queue write also goes to the log.")
