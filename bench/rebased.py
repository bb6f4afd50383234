"""Issue 17's ingest bar (point 5): the service against its own durable hand-off, one report per
request under `appendfsync always`, at wrk -c8 and at -c64.

Bar 2 of the speed issue compared the service with bare Flask, which writes nothing; under
`always` the write alone stays below that bar on this VM (docs/BENCHMARKS.md, session 5). Its
true ceiling is `bench/handoff_app.py`, the group-committed write and nothing else, so the bar
is the service's req/s over that reference's, >= 0.85x, in one run. At each connection count
the two apps alternate in pairs of short rounds, back to back (6 pairs in `make bench`, 12 in
the full plan), and the bar is the median of the pairs' ratios (`bench.ab`'s method): -c8 with
the apps `Run.ingest` started (gunicorn 2 x 4 threads); -c64 starts both again with
WEB_THREADS=32, so 64 connections meet 64 threads.
The -c8 bar once reused the three `always` rounds of the five-app alternation above it; a
service round there sat two rounds from its hand-off round, and in four runs of the same code
the bar swung 0.79-0.87 where twelve paired rounds gave 0.86-0.93 (docs/BENCHMARKS.md, session 8).
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from redis import Redis

if TYPE_CHECKING:
    from bench.run import Run

BAR = 0.85
WIDE_THREADS = 32  # x WEB_CONCURRENCY (2) = 64 threads for wrk -c64
SECONDS = 3  # one round


def ratios(runs: dict[str, list[dict[str, Any]]]) -> list[float]:
    """Each round's service req/s over the hand-off round beside it."""
    return [ours["rps"] / ref["rps"] for ours, ref in zip(runs["ours"], runs["handoff"], strict=True)]


def bar(run: Run, connections: int, runs: dict[str, list[dict[str, Any]]]) -> None:
    from bench.run import Bar

    pairs = ratios(runs)
    ratio = statistics.median(pairs)
    errors = sum(x["errors"]["status"] + x["errors"]["timeout"] for x in runs["ours"])
    ours, ref = (statistics.median(x["rps"] for x in runs[n]) for n in ("ours", "handoff"))
    run.add(Bar(
        f"ingest.rebased.c{connections}", f"ingest vs its hand-off, 1 report/request, appendfsync always, "
        f"wrk -c{connections}", ratio,
        f"x hand-off reference ({ours:,.0f} vs {ref:,.0f} req/s; rounds "
        f"{', '.join(f'{x:.2f}' for x in pairs)}; {errors} errors)", f">= {BAR}x",
        ratio >= BAR and errors == 0, baseline=f"bench/handoff_app.py {ref:,.0f} req/s",
        details={"rounds": pairs, "rps": {"ours": ours, "handoff": ref}}))


def paired(run: Run, urls: dict[str, str], connections: int, one: dict[str, str], r: Redis) -> None:
    """The plan's pairs of rounds, the hand-off's then the service's, back to back, Redis emptied
    after each pair (as `bench.ab` does); then the bar."""
    for url in urls.values():
        run.wrk("post.lua", url, 2, connections=connections, **one)  # warm both at this concurrency
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ("handoff", "ours")}
    for _ in range(run.plan.paired_rounds):
        for name in runs:
            runs[name].append(run.wrk("post.lua", urls[name], SECONDS, connections=connections, **one))
        r.flushall()
    run.raw[f"ingest_rebased_c{connections}"] = runs
    bar(run, connections, runs)


def wide(run: Run, redis_url: str, one: dict[str, str]) -> None:
    """The -c64 rounds: hand-off reference and service with 2 x 32 threads, alternating."""
    from bench.run import INGEST_PATH, REFERENCES

    connections = int(run.web_concurrency) * WIDE_THREADS
    env = {"REDIS_URL": redis_url, "WEB_THREADS": str(WIDE_THREADS)}
    urls = {
        "handoff": f"http://127.0.0.1:{run.gunicorn('handoff-wide', REFERENCES['handoff'][0], **env)}/",
        "ours": f"http://127.0.0.1:{run.gunicorn('ours-wide', 'app:create_app()', **env)}{INGEST_PATH}",
    }
    try:
        paired(run, urls, connections, one, Redis.from_url(redis_url))
    finally:
        run.procs.stop("handoff-wide")
        run.procs.stop("ours-wide")
