"""`make bench-cpu`: where the ingest bars' CPU goes, per request, by process.

The ingest bars (docs/BENCHMARKS.md, items 2 and 3) are ratios of requests/s. This explains
them: for bare Flask, the LPUSH-only app, the hand-off-only app, the service without its write
(bench/nowrite_app.py) and the service, under each
`appendfsync` setting, it runs wrk as `make bench` does and reads from /proc how much CPU time
the gunicorn processes and redis-server used per request (or per bucket), and how much of the
machine sat idle.

A request/s ratio is (CPU of bare per request) / (CPU of ours per request) when both saturate
the cores; idle time per request shows when they did not (waiting for fsyncs or for Redis).
Same processes, settings and traffic as `bench.run`; every process it starts is stopped by PID.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import redis

from bench.legs import sample_report
from bench.procs import children_of
from bench.run import INGEST_PATH, OUT, PLANS, TOKEN, Run

TICKS = os.sysconf("SC_CLK_TCK")
SECONDS = 6
ROUNDS = 2


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def idle_ticks() -> int:
    """Ticks all cores spent idle since boot (`/proc/stat`, first line, fourth figure)."""
    return int(Path("/proc/stat").read_text().split("\n", 1)[0].split()[4])


def measure(
    pids: dict[str, list[int]], load: Callable[[], dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, int]]:
    """Run `load`; return its wrk result, and the CPU ticks each group used meanwhile, and idle."""
    before = {name: sum(cpu_ticks(p) for p in group) for name, group in pids.items()}
    idle = idle_ticks()
    result = load()
    used = {name: sum(cpu_ticks(p) for p in group) - before[name] for name, group in pids.items()}
    used["idle"] = idle_ticks() - idle
    return result, used


def line(label: str, rate: str, used: dict[str, int], count: float, per: str) -> str:
    """`per` is "request" (figures in us) or "bucket" (in ms)."""
    scale, unit = (1e6, "us") if per == "request" else (1e3, "ms")
    parts = ", ".join(f"{name} {ticks / TICKS / count * scale:,.1f}" for name, ticks in used.items())
    return f"{label:38} {rate:>18}   {unit} per {per}: {parts}"


def main() -> int:
    run = Run(PLANS["short"], None)
    server = run.redis_server("cpu")
    r = redis.Redis.from_url(server.url)
    redis_pid = [int(server.process.pid)] if server.process else []
    try:
        urls = run.ingest_apps(server.url, "web-cpu")
        service = urls["ours"].removesuffix(INGEST_PATH)
        gunicorns = {name: name for name in urls} | {"ours": "web-cpu"}
        body = OUT / "report.json"
        body.write_bytes(orjson.dumps({"results": [sample_report(1, "single")]}))
        one = {"BENCH_BODY": str(body)}
        for url in urls.values():
            run.wrk("post.lua", url, 2, **one)
        print(f"CPU per request by process (gunicorn: master + workers), {run.web_concurrency}x"
              f"{run.web_threads} gthread, wrk -c{run.connections}, {SECONDS} s per line", flush=True)
        for round_ in range(ROUNDS):
            for fsync in ("always", "everysec"):
                r.config_set("appendfsync", fsync)
                for name, url in urls.items():
                    master = run.procs.pid(gunicorns[name])
                    pids = {"gunicorn": [master, *children_of(master)], "redis": redis_pid}
                    result, used = measure(pids, lambda url=url: run.wrk("post.lua", url, SECONDS, **one))
                    print(line(f"{name}, 1 report/request, {fsync}", f"{result['rps']:,.0f} req/s", used,
                               result["requests"], "request"), flush=True)
                r.flushall()
                master = run.procs.pid("web-cpu")
                pids = {"gunicorn": [master, *children_of(master)], "redis": redis_pid}
                result, used = measure(pids, lambda f=fsync, n=round_: run.wrk(
                    "buckets.lua", service, SECONDS, BENCH_TOTAL=10**9,
                    BENCH_BUCKET=100, BENCH_QUERY=f"?token={TOKEN}", BENCH_PREFIX=f"cpu{f}{n}"))
                rate = f"{result['reports_ok'] / result['seconds']:,.0f} reports/s"
                buckets = max(1, result["buckets_ok"])
                print(line(f"ours, 100-report buckets, {fsync}", rate, used, buckets, "bucket"), flush=True)
                r.flushall()
    finally:
        run.procs.stop_all()
        r.close()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
